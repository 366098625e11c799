"""Backends: one module per place a model can be served, all behind :class:`base.Backend`."""
