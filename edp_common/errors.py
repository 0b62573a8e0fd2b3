"""The errors of what the emitter and the consumers share; each package re-raises them as its own."""

from __future__ import annotations


class SharedError(Exception):
    """Base class of every error edp_common raises on purpose."""


class EnvelopeError(SharedError):
    """An envelope is broken; the message says what and where. Each parser re-raises it as its
    own package's BadEventError."""
