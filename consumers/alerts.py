"""SNS alerts of a consumer: text that names what failed and where to look, sized to SNS limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from consumers.errors import AlertError

logger = logging.getLogger(__name__)

SNS_SUBJECT_MAX_CHARS = 100  # Publish API limit; ASCII, no line breaks
SNS_MESSAGE_MAX_BYTES = 256 * 1024  # Publish API limit, UTF-8 bytes
TRUNCATION_MARK = "\n\n[... truncated to fit the SNS message size limit]"


@dataclass(frozen=True)
class Alert:
    """An alert ready to publish: ``subject`` and ``message`` already within SNS limits."""

    subject: str
    message: str


def catalog_url(quilt_url: str, bucket: str, package_name: str) -> str:
    """The catalog page of a package: ``<QUILT_URL>/b/<bucket>/packages/<name>``."""
    return f"{quilt_url.rstrip('/')}/b/{quote(bucket)}/packages/{quote(package_name)}"


def quarantine_alert(
    *,
    workflow: str | None,
    package_name: str,
    bucket: str,
    prefix: str,
    registry: str,
    quarantine_bucket: str,
    quilt_url: str,
    error: str,
) -> Alert:
    """The alert sent when a package failed its workflow and went to the quarantine bucket."""
    workflow_text = workflow or "(registry default)"
    message = (
        f"Workflow {workflow_text} rejected package {package_name} built from "
        f"s3://{bucket}/{prefix} for registry s3://{registry}.\n"
        f"It was pushed to the quarantine bucket {quarantine_bucket} instead:\n"
        f"{catalog_url(quilt_url, quarantine_bucket, package_name)}\n\n"
        f"Workflow: {workflow_text}\nPackage: {package_name}\nBucket: {bucket}\n\n"
        f"Error:\n{error}\n"
    )
    return make_alert(f"EDP: package {package_name} quarantined", message)


def make_alert(subject: str, message: str) -> Alert:
    """An :class:`Alert` whose subject and message fit SNS (truncated, never rejected)."""
    return Alert(subject=clean_subject(subject), message=truncate_message(message))


def clean_subject(subject: str) -> str:
    """ASCII printable, one line, at most 100 characters, as SNS requires."""
    text = "".join(char if " " <= char <= "~" else " " for char in subject)
    text = " ".join(text.split()) or "EDP alert"
    if len(text) > SNS_SUBJECT_MAX_CHARS:
        text = text[: SNS_SUBJECT_MAX_CHARS - 3] + "..."
    return text


def truncate_message(message: str, max_bytes: int = SNS_MESSAGE_MAX_BYTES) -> str:
    """``message`` cut (on a character boundary) so its UTF-8 form fits ``max_bytes``."""
    encoded = message.encode("utf-8")
    if len(encoded) <= max_bytes:
        return message
    budget = max_bytes - len(TRUNCATION_MARK.encode("utf-8"))
    head = encoded[:budget].decode("utf-8", errors="ignore")
    return head + TRUNCATION_MARK


def publish_alert(sns: Any, topic_arn: str, alert: Alert) -> str:
    """Publish ``alert``; return the SNS message id. Raises :class:`AlertError` with the cause."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = sns.publish(TopicArn=topic_arn, Subject=alert.subject, Message=alert.message)
    except (ClientError, BotoCoreError) as err:
        raise AlertError(
            f"could not publish alert {alert.subject!r} to {topic_arn}: {err}"
        ) from err
    message_id: str = response["MessageId"]
    logger.info("alert published", extra={"subject": alert.subject, "message_id": message_id})
    return message_id
