"""Testing kit for consumer authors: event factories, a fake Lambda context and fake-AWS helpers.

The pytest fixtures (``moto_server``, ``registry_bucket``, ``sns_reader``,
``consumer_env``, ``lambda_context``...) are registered automatically by the
``edp_consumers_testing`` pytest plugin; the names below are for imports.
"""

from consumers.testing.factories import (
    aws_encoded_key,
    event_template_names,
    load_event,
    package_objects_ready,
    s3_object_event,
    s3_sequencer,
    wrap,
)
from consumers.testing.lambda_context import FakeLambdaContext

__all__ = [
    "FakeLambdaContext",
    "aws_encoded_key",
    "event_template_names",
    "load_event",
    "package_objects_ready",
    "s3_object_event",
    "s3_sequencer",
    "wrap",
]
