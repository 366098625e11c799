"""The ``local`` backend: the entry script served on this machine's GPUs by the Azure ML inference server."""

from .backend import LocalBackend

__all__ = ["LocalBackend"]
