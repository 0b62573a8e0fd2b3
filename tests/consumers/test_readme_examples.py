"""The consumer examples of README.md and docs/writing-a-consumer.md, run as written against
moto (names they leave to the reader are given here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.consumers.consumer_helpers import World

README = Path(__file__).resolve().parents[2] / "README.md"
WRITING = README.parent / "docs" / "writing-a-consumer.md"


def readme_python_block_after(heading: str, doc: Path = WRITING) -> str:
    after = doc.read_text(encoding="utf-8").split(heading, 1)[1]
    match = re.search(r"^```python\n(.*?)^```", after, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def test_writing_your_own_consumer_runs_as_written(world: World) -> None:
    """The snippet's bucket and topic exist; its undefined names (the message body, the study
    lookup) are what a reader supplies."""
    world.install_workflow()
    world.s3.create_bucket(Bucket="my-quarantine")
    world.sns.create_topic(Name="edp-alerts")
    world.put("genome-lab/exp-0042/", {"a.csv": "x\n1\n"})
    message_body = json.dumps(
        {
            "detail-type": "package-objects-ready",
            "source": "com.quiltdata.edp",
            "detail": {"version": "0.1", "bucket": world.bucket, "prefix": "genome-lab/exp-0042/"},
        }
    )
    namespace: dict[str, Any] = {
        "message_body": message_body,
        "lookup_study": lambda prefix: "ABC-23-023394",
    }

    exec(readme_python_block_after("Writing your own consumer:"), namespace)

    outcome = namespace["outcome"]
    assert outcome.package_name == "lab/exp-0042"  # its name_for
    # Author and StudyID only: the instrument workflow wants more, so it is quarantined.
    assert (outcome.status, outcome.registry) == ("quarantined", "my-quarantine")
    assert "is a required property" in outcome.message


def test_the_readmes_library_example_runs_as_written(
    world: World, monkeypatch: Any, capsys: Any
) -> None:
    """README.md's "Package a prefix from your own code": settings from the environment."""
    world.install_workflow()
    world.put("genome-lab/exp-0042/", {"a.csv": "x\n1\n"})
    monkeypatch.setenv("QUARANTINE_BUCKET_NAME", world.quarantine)
    monkeypatch.setenv("SNS_TOPIC_ARN", world.topic_arn)
    monkeypatch.setenv("QUILT_URL", "https://quilt.example.com")
    message_body = json.dumps(
        {
            "detail-type": "package-objects-ready",
            "source": "com.quiltdata.edp",
            "detail": {"version": "0.1", "bucket": world.bucket, "prefix": "genome-lab/exp-0042/"},
        }
    )
    namespace: dict[str, Any] = {"message_body": message_body}

    exec(readme_python_block_after("Package a prefix from your own code", README), namespace)

    # No metadata: the instrument workflow rejects it, so it is quarantined, and the snippet says so.
    assert namespace["outcome"].status == "quarantined"
    assert capsys.readouterr().out.strip().endswith("quarantined")
