"""quilt3 settings that are safe in AWS Lambda, applied before quilt3 is first imported.

quilt3 reads these at import time: its data and cache folders come from platformdirs (under a
read-only ``$HOME`` in Lambda), telemetry posts to the internet, and tqdm bars clutter the logs.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

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
