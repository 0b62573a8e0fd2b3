"""`edp run` as a child process for the service tests: the real CLI, signals and all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


class EdpRun:
    """`edp run` in a child process (the real CLI, signals and all), its stderr kept in a file."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        *,
        script: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        command = [sys.executable, str(script)] if script else [sys.executable, "-m", "edp.cli"]
        self._log_file = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [*command, "run", *args],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            cwd=HERE,
            env={**os.environ, **(env or {})},
        )

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for_line(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`edp run` never logged {text!r}:\n{self.stderr()}")
            time.sleep(0.05)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log_file.close()
