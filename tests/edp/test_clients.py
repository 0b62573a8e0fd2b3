"""One boto3 client factory (edp_common.clients) for the emitter and the consumers: every client
has bounded timeouts and retries; a publishing call ends well within the claim lease's margin."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from consumers.clients import Clients
from edp.publisher import LEASE_MARGIN
from edp_common.clients import client_factory, longest_call, make_client


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("service", ["events", "sns"])
def test_one_publishing_call_ends_well_within_the_lease_margin(service: str) -> None:
    config = make_client(service, region="us-east-1").meta.config
    assert config.read_timeout <= 30 and config.connect_timeout <= 10
    assert longest_call(config) <= LEASE_MARGIN.total_seconds() * 2 / 3


@pytest.mark.parametrize("service", ["s3", "sqs", "secretsmanager", "storagegateway"])
def test_every_client_has_bounded_timeouts_and_retries(service: str) -> None:
    config = make_client(service, region="us-east-1").meta.config
    assert config.connect_timeout and config.read_timeout
    assert config.retries["total_max_attempts"] >= 1
    assert longest_call(config) < 600


def test_a_silent_endpoint_fails_the_call_instead_of_hanging(silent_server: str) -> None:
    events = make_client(
        "events",
        region="us-east-1",
        endpoint_url=silent_server,
        read_timeout=0.3,
        connect_timeout=0.3,
    )
    started = time.monotonic()
    with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
        events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}])
    assert time.monotonic() - started < 10  # two attempts of 0.3 s plus a short backoff


def test_consumers_get_the_same_bounded_clients() -> None:
    clients = Clients()
    s3 = clients.s3
    assert s3.meta.config.read_timeout == make_client("s3").meta.config.read_timeout
    assert s3.meta.config.max_pool_connections > 10  # sized for the hasher's threads
    assert clients.sns.meta.config.retries == make_client("sns").meta.config.retries


def test_the_factory_makes_nothing_until_called() -> None:
    made = client_factory("sqs", region="eu-west-1")
    assert made().meta.region_name == "eu-west-1"
