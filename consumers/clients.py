"""boto3 clients of a consumer, created lazily at first use (so moto can start first) or passed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edp_common.clients import make_client

ClientFactory = Callable[[str], Any]


def default_client_factory(service: str) -> Any:
    """A boto3 client with bounded timeouts and retries (edp_common.clients); botocore honours
    ``AWS_ENDPOINT_URL`` itself, as quilt3 relies on.

    The S3 client's connection pool fits the hasher's threads (objects and their parts at once).
    """
    if service == "s3":
        from consumers.hashing import HASH_CONCURRENCY

        return make_client("s3", max_pool_connections=2 * HASH_CONCURRENCY)
    return make_client(service)


class Clients:
    """The S3, SNS and Storage Gateway clients, each made by ``factory`` the first time it is used.

    Pass ready-made clients (``Clients(sns=my_sns)``) to stub or share them.
    """

    def __init__(
        self,
        *,
        s3: Any = None,
        sns: Any = None,
        storagegateway: Any = None,
        factory: ClientFactory = default_client_factory,
    ) -> None:
        self._clients: dict[str, Any] = {
            name: client
            for name, client in (("s3", s3), ("sns", sns), ("storagegateway", storagegateway))
            if client is not None
        }
        self._factory = factory

    def _get(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    @property
    def s3(self) -> Any:
        return self._get("s3")

    @property
    def sns(self) -> Any:
        return self._get("sns")

    @property
    def storagegateway(self) -> Any:
        return self._get("storagegateway")
