"""A throwaway PostgreSQL cluster for tests that must stop or restart a server.

The tests never stop, restart or reconfigure a server they did not start: a test that needs a
restart runs ``initdb`` into a temporary folder, starts that cluster on a free port of 127.0.0.1,
restarts it as it pleases, and removes it afterwards. As root, the cluster runs as the ``postgres``
user (PostgreSQL refuses to run as root). No ``initdb`` on the machine: the test skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_binary(name: str) -> str | None:
    """``name`` (initdb, pg_ctl) from PATH or the newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for directory in BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawayCluster:
    """A cluster in ``data`` listening on 127.0.0.1:``port``; ``url`` is its admin URL."""

    data: Path
    port: int
    pg_ctl: str
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str, *extra: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, action, "-D", str(self.data), "-w", *extra],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self.ctl("start", "-o", options, "-l", str(self.data / "server.log"))

    def restart(self) -> None:
        """A fast restart (connections are cut, as after a crash or failover)."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self.ctl("restart", "-m", "fast", "-o", options, "-l", str(self.data / "server.log"))

    def stop(self) -> None:
        self.ctl("stop", "-m", "immediate")


@contextmanager
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """Start a fresh cluster on a free port; stop and delete it on exit (skip without initdb)."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("initdb/pg_ctl not installed: cannot start a throwaway PostgreSQL")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="edp-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root without a 'postgres' user to run a cluster as")
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(root)
            pytest.skip("running as root without runuser: cannot start a cluster")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = [runuser, "-u", "postgres", "--"]
    data = root / "data"
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster = ThrowawayCluster(data, free_port(), pg_ctl, run_as)
        cluster.start()
        try:
            yield cluster
        finally:
            with suppress(subprocess.SubprocessError):
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
