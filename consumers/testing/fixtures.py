"""Fixtures of the consumer testing kit: fake AWS, a registry, an SNS reader, a Lambda context.

moto and boto3 are imported inside the fixtures, so loading the plugin costs
nothing for test runs that do not use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from consumers.testing.lambda_context import FakeLambdaContext

if TYPE_CHECKING:
    from consumers.testing.aws import MotoServer, SnsReader

QUILT_OFFLINE_ENV = {
    # quilt3 would otherwise post usage metrics to the internet from every push.
    "QUILT_DISABLE_USAGE_METRICS": "true",
}


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials and region in the environment; nothing can reach a real account."""
    from consumers.testing.aws import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV

    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = {**FAKE_AWS_ENV, **QUILT_OFFLINE_ENV}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def mocked_aws(aws_credentials: dict[str, str], request: pytest.FixtureRequest) -> Iterator[None]:
    """moto's in-process mock (``moto.mock_aws``), started before any client exists.

    Fastest; fine for code that only uses boto3. For quilt3 use ``moto_server``.
    """
    if "moto_server" in request.fixturenames:
        raise pytest.UsageError(
            "use either mocked_aws or moto_server in a test, not both "
            "(registry_bucket, quarantine_bucket, sns_reader and consumer_env use moto_server)"
        )
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture(scope="session")
def edp_moto_server_process() -> Iterator[MotoServer]:
    """One moto server for the whole test session (reset by ``moto_server`` before each test)."""
    from consumers.testing.aws import running_moto_server

    with running_moto_server() as server:
        yield server


@pytest.fixture
def moto_server(
    aws_credentials: dict[str, str],
    edp_moto_server_process: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """An empty moto server on 127.0.0.1; ``AWS_ENDPOINT_URL`` points every new client at it.

    This is the one to use with quilt3, which builds its own boto3 sessions.
    Returns the endpoint URL.
    """
    edp_moto_server_process.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", edp_moto_server_process.url)
    return edp_moto_server_process.url


@pytest.fixture
def registry_bucket_name() -> str:
    """Name of the registry bucket; override this fixture to use another name."""
    return "edp-registry"


@pytest.fixture
def quarantine_bucket_name() -> str:
    """Name of the quarantine bucket; override this fixture to use another name."""
    return "edp-quarantine"


@pytest.fixture
def workflows_dir() -> Path | None:
    """Folder of the workflow config installed in ``registry_bucket`` (``config.yml`` + schemas).

    Default: the toolkit's ``workflows/`` (``None``, a permissive fallback, when
    it is not installed). Override it to test against your registry's workflows.
    """
    from consumers.testing.workflows import toolkit_workflows_dir

    return toolkit_workflows_dir()


@pytest.fixture
def workflow_name(workflows_dir: Path | None) -> str:
    """The workflow packages are validated with: the installed config's ``default_workflow``."""
    from consumers.testing.workflows import default_workflow

    return default_workflow(workflows_dir)


@pytest.fixture
def registry_bucket(moto_server: str, registry_bucket_name: str, workflows_dir: Path | None) -> str:
    """A bucket on the moto server with Quilt workflows (``workflows_dir``) installed.

    Returns the bucket name.
    """
    from consumers.testing.aws import create_bucket
    from consumers.testing.workflows import install_workflows

    create_bucket(registry_bucket_name)
    install_workflows(registry_bucket_name, workflows_dir)
    return registry_bucket_name


@pytest.fixture
def quarantine_bucket(moto_server: str, quarantine_bucket_name: str) -> str:
    """An empty bucket (no workflows: anything may be pushed there). Returns its name."""
    from consumers.testing.aws import create_bucket

    return create_bucket(quarantine_bucket_name)


@pytest.fixture
def sns_reader(moto_server: str) -> SnsReader:
    """An SNS topic subscribed to an SQS queue; ``.messages()`` returns what was published."""
    from consumers.testing.aws import SnsReader

    return SnsReader.create()


@pytest.fixture
def consumer_env(
    monkeypatch: pytest.MonkeyPatch,
    registry_bucket: str,
    quarantine_bucket: str,
    sns_reader: SnsReader,
    workflow_name: str,
) -> dict[str, str]:
    """The reference Lambda's environment variables, pointing at the fixtures' buckets and topic.

    Returns what was set, so a test can build settings from it explicitly.
    """
    env = {
        "WORKFLOW_NAME": workflow_name,
        "QUARANTINE_BUCKET_NAME": quarantine_bucket,
        "SNS_TOPIC_ARN": sns_reader.topic_arn,
        "QUILT_URL": "https://quilt.example.com",
        "POWERTOOLS_SERVICE_NAME": "edp-consumer-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "EDPConsumerTests",
    }
    from consumers.settings import ENV_VARS

    for name in ENV_VARS:  # a developer's shell must not change what the tests see
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """A Lambda context object with the attributes the runtime provides."""
    return FakeLambdaContext()
