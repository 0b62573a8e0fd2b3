"""Downstream consumers of package-objects-ready events: build, validate and push Quilt packages."""
