"""The ``azureml`` backend: Azure ML SDK v1 (``azureml-core``), AKS compute targets and AKS web services.

``backend`` holds :class:`~.backend.AzureMLBackend`; it is not imported here, because importing it sets the
SDK's retry settings in this process's environment (see ``sdk.SDK_SETTINGS``), which only the operator
process should do, not every importer of ``errors``.
"""
