"""The ``local`` backend: the entry script served on this machine's GPUs by the Azure ML inference server.

``backend`` holds :class:`~.backend.LocalBackend`; ``state`` (the service records), ``replicas`` (starting one),
``gate`` (the replicas' gunicorn config: the shared port and the key check), ``environments``, ``processes``,
``gpus`` and ``logs`` are its parts.
"""
