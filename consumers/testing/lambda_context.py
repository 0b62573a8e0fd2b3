"""A stand-in for the Lambda runtime's context object, with the attributes Powertools reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeLambdaContext:
    """What a Python Lambda handler receives as ``context``.

    The remaining time is a fixed number (no clock), so tests are repeatable;
    set ``remaining_time_in_millis`` to test time-aware handlers.
    """

    function_name: str = "edp-consumer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    region: str = "us-east-1"
    account: str = "123456789012"
    remaining_time_in_millis: int = 300_000
    identity: Any = None
    client_context: Any = None
    invoked_function_arn: str = field(default="")
    log_group_name: str = field(default="")
    log_stream_name: str = "2022/12/08/[$LATEST]f0e1d2c3b4a5968778695a4b3c2d1e0f"

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_time_in_millis
