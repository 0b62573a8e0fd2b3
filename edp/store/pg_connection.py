"""The PostgreSQL store's connection: its parameters (from the URL and an RDS-style Secrets
Manager secret), reconnection after a restart or failover, and one transaction per unit of work
that is never applied twice. Passwords never appear in a message."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ConnStatus

from edp.errors import StoreError
from edp.store.urls import redact_url

log = logging.getLogger("edp.store.postgres")

T = TypeVar("T")

RECONNECT_WAIT = 30.0  # seconds to keep trying to reach a restarting server before giving up
CONNECT_TIMEOUT = 10  # seconds, libpq connect_timeout unless the URL sets one
ROLLBACK_RETRIES = 5  # deadlock / serialization failures retried (should never happen; counted)


def secret_params(
    secret_arn: str, client_factory: Callable[..., Any] | None = None
) -> dict[str, str]:
    """Connection parameters from an RDS-style Secrets Manager secret (username, password, host...).

    The client is created here, at call time, in the secret's own region. Neither the secret's
    text nor its password ever goes into an error message.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    parts = secret_arn.split(":")
    region = parts[3] if len(parts) > 6 and parts[0] == "arn" and parts[3] else None
    if client_factory is None:
        from edp_common.clients import make_client

        def client_factory() -> Any:
            return make_client("secretsmanager", region=region)

    try:
        text = client_factory().get_secret_value(SecretId=secret_arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as err:
        raise StoreError(
            f"cannot read the database secret {secret_arn}: {err}; check EDP_DATABASE_SECRET_ARN "
            "and that the role may call secretsmanager:GetSecretValue on it"
        ) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        # `from None`: the decode error would quote the secret's text.
        raise StoreError(
            f"the database secret {secret_arn} is not a JSON object with username, password, "
            "host, port and dbname (the RDS secret format)"
        ) from None
    params: dict[str, str] = {}
    for source, target in (
        ("username", "user"),
        ("password", "password"),
        ("host", "host"),
        ("port", "port"),
        ("dbname", "dbname"),
    ):
        if data.get(source) not in (None, ""):
            params[target] = str(data[source])
    return params


class PgConnection:
    """One PostgreSQL connection, opened with the URL's and the secret's parameters and reused;
    every unit of work runs in one transaction, run again once after the server went away."""

    def __init__(
        self,
        url: str,
        *,
        secret_arn: str | None = None,
        secrets_client_factory: Callable[..., Any] | None = None,
        reconnect_wait: float = RECONNECT_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        read_only: bool = False,
    ) -> None:
        """``read_only``: every transaction is read-only (``default_transaction_read_only``)."""
        self.url = redact_url(url)  # the only form of the URL that is ever shown
        self._conninfo = url
        self._secret_arn = secret_arn
        self._secrets_client_factory = secrets_client_factory
        self._reconnect_wait = reconnect_wait
        self._sleep = sleep
        self._monotonic = monotonic
        self._passwords: set[str] = set()  # every password seen, masked in every message
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()
        self.reconnects = 0  # how often the connection was re-established (tests, metrics)
        self.rollback_retries = 0  # deadlocks or serialization failures retried (should stay 0)
        self._read_only = read_only
        self._connect(wait=0.0)

    @property
    def conn(self) -> psycopg.Connection[Any] | None:
        """The open connection, if any (tests read its backend pid)."""
        return self._conn

    def _scrub(self, text: str) -> str:
        """``text`` with the password (from the URL or the secret) masked, whatever produced it."""
        text = text.replace(self._conninfo, self.url)
        for password in self._passwords:
            text = text.replace(password, "***")
        return text

    def _error(self, doing: str, err: BaseException) -> StoreError:
        return StoreError(
            self._scrub(f"PostgreSQL store {self.url}: cannot {doing}: {err}".strip())
        )

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        given = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        if given.get("password"):
            self._passwords.add(str(given["password"]))
        if self._secret_arn:
            params.update(secret_params(self._secret_arn, self._secrets_client_factory))
            if params.get("password"):
                self._passwords.add(params["password"])
        if "connect_timeout" not in given:
            params["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in given:
            params["application_name"] = "edp"
        return params

    def _connect(self, wait: float) -> psycopg.Connection[Any]:
        """Open the connection, retrying for up to ``wait`` seconds (a server restarting)."""
        try:
            params = self._params()
        except psycopg.Error as err:
            raise StoreError(
                f"PostgreSQL store {self.url}: not a valid connection URL ({type(err).__name__})"
            ) from None
        deadline = self._monotonic() + wait
        delay = 0.1
        while True:
            try:
                self._conn = psycopg.connect(self._conninfo, autocommit=True, **params)
                if self._read_only:
                    self._conn.execute("SET default_transaction_read_only = on")
                return self._conn
            except psycopg.Error as err:
                if self._monotonic() + delay > deadline:
                    raise self._error("connect", err) from err
                log.warning("PostgreSQL not reachable, retrying: %s", self._scrub(str(err)))
                self._sleep(delay)
                delay = min(delay * 2, 1.0)

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or self._lost(conn):
            self._discard()
            self.reconnects += 1
            conn = self._connect(wait=self._reconnect_wait)
        return conn

    @staticmethod
    def _lost(conn: psycopg.Connection[Any]) -> bool:
        return conn.closed or conn.broken or conn.pgconn.status != ConnStatus.OK

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _committed(self, xid: str) -> bool:
        """Whether the transaction ``xid`` committed (asked after the connection died in COMMIT)."""
        conn = self._connection()
        row = conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
        return row is not None and row[0] == "committed"

    def run(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        what: str,
        durable: bool = True,
        idempotent: bool = False,
    ) -> T:
        """Run ``work`` in one transaction; reconnect and run it again once if the server went away.

        Before running a transaction again after the connection died in COMMIT, ask the server
        whether that COMMIT landed, unless running it twice does no harm (``idempotent``: reads,
        marking published). ``durable=False`` lets the COMMIT return before the disk write.
        """
        with self._lock:
            reconnected = False
            rollbacks = 0
            while True:
                conn = self._connection()  # StoreError when the server stays unreachable
                xid: str | None = None
                done = False
                result: T
                try:
                    with conn.transaction():
                        if not idempotent:
                            row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
                            xid = row[0] if row else None
                        if not durable:
                            conn.execute("SET LOCAL synchronous_commit = off")
                        result = work(conn)
                        done = True
                    return result
                except pg_errors.TransactionRollback as err:
                    # Deadlock or serialization failure: the design should make these impossible,
                    # so they are counted (tests assert zero) as well as retried.
                    self.rollback_retries += 1
                    rollbacks += 1
                    log.warning("transaction rolled back, retrying: %s", self._scrub(str(err)))
                    if rollbacks > ROLLBACK_RETRIES:
                        raise self._error(what, err) from err
                except psycopg.OperationalError as err:
                    if not self._lost(conn):
                        raise self._error(what, err) from err
                    self._discard()
                    log.warning("PostgreSQL connection lost (%s); reconnecting", type(err).__name__)
                    if reconnected:
                        raise self._error(what, err) from err
                    reconnected = True
                    if done and xid is not None:
                        try:
                            if self._committed(xid):
                                return result
                        except (psycopg.Error, StoreError) as check_err:
                            raise self._error(what, check_err) from err
                except psycopg.Error as err:
                    raise self._error(what, err) from err

    def close(self) -> None:
        with self._lock:
            self._discard()
