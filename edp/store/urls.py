"""Database URLs: which backend a URL names (its scheme, parsed once, here) and how to show it
without its password."""

from __future__ import annotations

import re

# Scheme as written -> the backend it names.
BACKENDS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "memory": "memory",
}
EXPECTED = "sqlite:///path/to/file.sqlite or postgresql://user@host:5432/db"


def backend_of(url: str) -> str | None:
    """``"sqlite"``, ``"postgresql"`` or ``"memory"`` for a URL naming that store, else None."""
    scheme = url.split(":", 1)[0].strip().lower()
    return BACKENDS.get(scheme)


# A password given as a parameter: ``password=`` (or ``sslpassword=``) in a URL's query or in a
# libpq key=value string (``host=db password=secret``, values possibly quoted: ``password='a b'``).
_PASSWORD_PARAM = re.compile(
    r"((?:^|[\s?&])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """The URL or libpq connection string with every password replaced by ``***`` (safe to log
    or print): in a URL's user part, and in any ``password=`` parameter, quoted or not."""
    masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return _PASSWORD_PARAM.sub(r"\1***", masked)
