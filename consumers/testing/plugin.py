"""pytest plugin of the consumer testing kit: registers ``consumers.testing.fixtures``.

Loaded through the ``pytest11`` entry point ``edp_consumers_testing``; it imports
only pytest and the standard library, moto and boto3 load when a fixture runs.
"""

from consumers.testing.fixtures import (
    aws_credentials,
    consumer_env,
    edp_moto_server_process,
    lambda_context,
    mocked_aws,
    moto_server,
    quarantine_bucket,
    quarantine_bucket_name,
    registry_bucket,
    registry_bucket_name,
    sns_reader,
    workflow_name,
    workflows_dir,
)

__all__ = [
    "aws_credentials",
    "consumer_env",
    "edp_moto_server_process",
    "lambda_context",
    "mocked_aws",
    "moto_server",
    "quarantine_bucket",
    "quarantine_bucket_name",
    "registry_bucket",
    "registry_bucket_name",
    "sns_reader",
    "workflow_name",
    "workflows_dir",
]
