"""The ``azureml`` backend: Azure ML SDK v1 (``azureml-core``), AKS compute targets and AKS web services."""

from .backend import AzureMLBackend

__all__ = ["AzureMLBackend"]
