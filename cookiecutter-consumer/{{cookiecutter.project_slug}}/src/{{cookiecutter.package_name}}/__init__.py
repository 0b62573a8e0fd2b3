"""EDP consumer Lambda: turns each package-objects-ready batch into a Quilt package."""
