"""The ``local`` backend: the entry script served on this machine's GPUs by the Azure ML inference server.

``backend`` holds :class:`~.backend.LocalBackend`; ``environments``, ``router`` and ``processes`` are its parts.
"""
