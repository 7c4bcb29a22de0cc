"""The losses, one module per family; their public names are re-exported flat by :mod:`metricloss`."""
