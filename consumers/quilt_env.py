"""quilt3 settings that are safe in AWS Lambda, applied before quilt3 is first imported.

quilt3 reads these at import time: its data and cache folders come from platformdirs (under a
read-only ``$HOME`` in Lambda), telemetry posts to the internet, and tqdm bars clutter the logs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, MutableMapping

logger = logging.getLogger(__name__)

LAMBDA_SCRATCH = "/tmp/quilt"  # the only writable place in Lambda
LAMBDA_MARKER = "AWS_LAMBDA_FUNCTION_NAME"

ALWAYS = {
    "QUILT_DISABLE_USAGE_METRICS": "true",
    "QUILT_MINIMIZE_STDOUT": "true",
}
IN_LAMBDA = {
    "QUILT_DISABLE_CACHE": "true",
    "XDG_DATA_HOME": f"{LAMBDA_SCRATCH}/data",
    "XDG_CACHE_HOME": f"{LAMBDA_SCRATCH}/cache",
    "XDG_CONFIG_HOME": f"{LAMBDA_SCRATCH}/config",
}


def quilt_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set, where not already set, the variables that make quilt3 quiet and Lambda-safe.

    Returns the variables it set. Call it before the first ``import quilt3``.
    """
    env = os.environ if env is None else env
    wanted = dict(ALWAYS)
    if env.get(LAMBDA_MARKER):
        wanted.update(IN_LAMBDA)
    applied = {}
    for name, value in wanted.items():
        if name not in env:
            env[name] = value
            applied[name] = value
    return applied


@contextlib.contextmanager
def quilt_stdout_captured() -> Iterator[None]:
    """Keep quilt3's ``print`` lines ("Successfully pushed ...") and progress bars out of the log.

    In Lambda stdout is the log: the consumer writes one structured line per outcome instead.
    What quilt3 printed is logged at DEBUG. Powertools' handler keeps the stream it was given at
    start, so its lines still reach stdout.
    """
    buffer = io.StringIO()
    try:
        # stderr too: tqdm bars go there when QUILT_MINIMIZE_STDOUT was not set before quilt3's
        # import, and in Lambda stderr is the same log.
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logger.debug("quilt3 output", extra={"quilt3_output": text})
