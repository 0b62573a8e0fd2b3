"""`edp run`, killed by SIGKILL at a chosen point between closing a batch and recording it sent.

For the crash test only. EDP_TEST_CRASH_AT chooses the point:

* ``after-close``: the batch is closed into the store's outbox; nothing claimed or sent yet;
* ``before-put``: the outbox entry is claimed for publishing; PutEvents not called yet;
* ``after-put``: PutEvents accepted the event; the store has not recorded it as published.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edp.cli import main
from edp.core import Emission
from edp.emitter import Emitter
from edp.publisher import Publisher


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    close_due, send = Emitter.close_due, Publisher.send

    def close_then_die(self: Emitter, now: datetime) -> list[Emission]:
        closed = close_due(self, now)
        if closed:
            die()
        return closed

    def die_instead_of_publishing(
        self: Publisher, chunk: Sequence[Emission], **kwargs: Any
    ) -> tuple[list[Emission], list[Emission], int]:
        die()
        raise AssertionError("unreachable")

    def publish_then_die(
        self: Publisher, chunk: Sequence[Emission], **kwargs: Any
    ) -> tuple[list[Emission], list[Emission], int]:
        done, failed, sns_failures = send(self, chunk, **kwargs)
        if done:
            die()
        return done, failed, sns_failures

    patches = {
        "after-close": (Emitter, "close_due", close_then_die),
        "before-put": (Publisher, "send", die_instead_of_publishing),
        "after-put": (Publisher, "send", publish_then_die),
    }
    owner, name, replacement = patches[point]
    setattr(owner, name, replacement)


if __name__ == "__main__":
    install(os.environ["EDP_TEST_CRASH_AT"])
    sys.exit(main(sys.argv[1:]))
