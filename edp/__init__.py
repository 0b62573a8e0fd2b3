"""Event-driven data packaging: the package-objects-ready emitter."""

__version__ = "0.1.0"
