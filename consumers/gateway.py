"""Storage Gateway cache refresh after a push, so File Gateway clients see the new package."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from consumers.errors import GatewayRefreshError

logger = logging.getLogger(__name__)

# Errors worth another try: throttling, and the gateway refusing while a refresh is running.
RETRYABLE_ERROR_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "InvalidGatewayRequestException"}
)
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0


@dataclass(frozen=True)
class RefreshResult:
    """Outcome of one file share's refresh: the notification id, or the error after retries."""

    file_share_arn: str
    notification_id: str | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def refresh_folders(prefix: str) -> list[str]:
    """The file share folders of ``prefix`` (``a/b/`` -> ``/a/b``), as ``FolderList`` expects."""
    return ["/" + prefix.strip("/")]


def folders_to_refresh(prefix: str, package_name: str, *, copied: bool) -> list[str]:
    """The folders File Gateway clients read the package's files from after a push.

    Into the watched bucket nothing is copied: the files stay in the source prefix (the extras
    land there too), so that is what a share on the watched bucket must refresh. Into another
    registry bucket quilt3 copies the files to ``<registry>/<package name>/``: a share on the
    registry sees them there, and the source prefix has not changed.
    """
    return refresh_folders(package_name + "/" if copied else prefix)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): 1, 2, 4, ... capped."""
    return float(min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS))


def refresh_file_share(
    storagegateway: Any,
    file_share_arn: str,
    folders: list[str],
    *,
    max_attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> RefreshResult:
    """``RefreshCache`` on one share, retrying retryable errors with exponential backoff.

    Raises :class:`GatewayRefreshError` (with the last error as cause) when it gives up.
    """
    from botocore.exceptions import ClientError

    for attempt in range(1, max_attempts + 1):
        try:
            response = storagegateway.refresh_cache(
                FileShareARN=file_share_arn, FolderList=folders, Recursive=True
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in RETRYABLE_ERROR_CODES:
                raise GatewayRefreshError(
                    f"RefreshCache on {file_share_arn} failed with {code}: {err}"
                ) from err
            if attempt == max_attempts:
                raise GatewayRefreshError(
                    f"RefreshCache on {file_share_arn} still failing with {code} "
                    f"after {max_attempts} attempts: {err}"
                ) from err
            delay = backoff_delay(attempt)
            logger.warning(
                "RefreshCache retry",
                extra={"file_share_arn": file_share_arn, "code": code, "delay": delay},
            )
            sleep(delay)
        else:
            return RefreshResult(
                file_share_arn=file_share_arn,
                notification_id=response.get("NotificationId"),
                attempts=attempt,
            )
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def refresh_file_shares(
    storagegateway: Any,
    file_share_arns: Iterable[str],
    folders: list[str],
    *,
    max_attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> list[RefreshResult]:
    """Refresh every share; a share that fails is reported in its result, never raised."""
    results = []
    for arn in file_share_arns:
        try:
            results.append(
                refresh_file_share(
                    storagegateway, arn, folders, max_attempts=max_attempts, sleep=sleep
                )
            )
        except GatewayRefreshError as err:
            logger.error("RefreshCache gave up", extra={"file_share_arn": arn, "error": str(err)})
            results.append(RefreshResult(file_share_arn=arn, error=str(err), attempts=max_attempts))
    return results
