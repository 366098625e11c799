"""The ``azureml-v2`` backend: Azure ML SDK v2 (``azure-ai-ml``, ``azure-identity``), online endpoints.

``backend`` holds :class:`~.backend.AzureMLV2Backend` (imported only where the backend is enabled, as it imports
the SDK); ``rollout`` the pure blue/green and capacity rules; ``errors`` what an SDK failure means; ``session``
the signed-in clients and the thread pool their blocking calls run in.
"""
