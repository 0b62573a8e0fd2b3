"""boto3 clients for the emitter and the consumers, made at call time (so moto starts first),
each with bounded timeouts and retries, so no call can hang for long."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A socket that cannot connect or goes silent gives up after this many seconds.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60  # longer than any long poll (SQS's is at most 20 s)
TOTAL_ATTEMPTS = 4  # botocore's own retries of one call, the first attempt included

# Publishing (PutEvents, then the SNS copies): a claim's lease outlives its publish budget by
# edp.publisher.LEASE_MARGIN (90 s), so one call still in flight at the deadline must end well
# within that. The publisher retries failed entries itself, so botocore retries once, quickly.
PUBLISH_READ_TIMEOUT = 20
PUBLISH_TOTAL_ATTEMPTS = 2
PUBLISHING = ("events", "sns")
# botocore's standard mode waits up to 2**(n-1) s (at most 20) before retry n, plus up to 5 s
# more when the service asks (x-amz-retry-after).
MAX_RETRY_BACKOFF = 20
RETRY_AFTER_EXTRA = 5


def client_config(service: str, **overrides: Any) -> Any:
    """The botocore ``Config`` for ``service``: the bounds above, then ``overrides`` (for
    example ``max_pool_connections``)."""
    from botocore.config import Config

    publishing = service in PUBLISHING
    values: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": PUBLISH_READ_TIMEOUT if publishing else READ_TIMEOUT,
        "retries": {
            "mode": "standard",
            "total_max_attempts": PUBLISH_TOTAL_ATTEMPTS if publishing else TOTAL_ATTEMPTS,
        },
    }
    values.update(overrides)
    return Config(**values)


def longest_call(config: Any) -> float:
    """The longest one API call made with ``config`` can take, in seconds: every attempt times
    out connecting and then reading, with the longest wait between attempts."""
    attempts = int(config.retries["total_max_attempts"])
    per_attempt = float(config.connect_timeout) + float(config.read_timeout)
    waits = sum(
        min(2 ** (n - 1), MAX_RETRY_BACKOFF) + RETRY_AFTER_EXTRA for n in range(1, attempts)
    )
    return attempts * per_attempt + waits


def make_client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    **config: Any,
) -> Any:
    """A new boto3 client with :func:`client_config`. Each has its own session: boto3's default
    session is not thread-safe while it creates clients. Without ``endpoint_url`` botocore
    still honours ``AWS_ENDPOINT_URL`` (emulators), as quilt3 relies on."""
    import boto3

    session = boto3.session.Session(region_name=region)
    return session.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, config=client_config(service, **config)
    )


def client_factory(
    service: str, *, region: str | None = None, endpoint_url: str | None = None, **config: Any
) -> Callable[[], Any]:
    """A function making that client when first needed (nothing is created now)."""

    def make() -> Any:
        return make_client(service, region=region, endpoint_url=endpoint_url, **config)

    return make
