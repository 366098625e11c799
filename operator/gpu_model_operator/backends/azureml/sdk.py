"""azureml-core as the backend uses it: imported here once, at its first use, after its retry settings are switched
off.

The SDK reads these settings once, when ``azureml._restclient.clientbase`` is first imported: by default it
retries each HTTP call 3 times itself, sleeping 32/64/128 s on a 429 (whatever Retry-After says) and 2-10 s on a
503, inside the operator's own backoff. Every module of this backend takes the SDK's classes from here, so
whichever is imported first, the settings come before the SDK; a deployer may still set any of them in the
environment. Only the operator process imports this (``errors`` imports no SDK and sets nothing).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

SDK_SETTINGS = {
    "AZUREML_DEFAULT_RETRIES": "0",
    "AZUREML_DEFAULT_BACKOFF": "1",
    "AZUREML_DEFAULT_500_BACKOFF": "1",
    "AZUREML_DEFAULT_503_BACKOFF": "1",
    "AZUREML_LOG_DEPRECATION_WARNING_ENABLED": "False",
}
for _name, _value in SDK_SETTINGS.items():
    os.environ.setdefault(_name, _value)
SDK_IMPORTED_EARLY = "azureml._restclient.clientbase" in sys.modules

#: Where each name comes from: imported at the first use of any (azureml-core costs about 40 MB of the operator's
#: memory; a process that serves it but has no resource of it yet, or reads only the settings, never pays).
_FROM = {
    "Workspace": "azureml.core",
    "ServicePrincipalAuthentication": "azureml.core.authentication",
    "AksCompute": "azureml.core.compute",
    "ComputeTarget": "azureml.core.compute",
    "Environment": "azureml.core.environment",
    "InferenceConfig": "azureml.core.model",
    "Model": "azureml.core.model",
    "AksWebservice": "azureml.core.webservice",
    "Webservice": "azureml.core.webservice",
    "ComputeTargetException": "azureml.exceptions",
    "WebserviceException": "azureml.exceptions",
}

if TYPE_CHECKING:
    from azureml.core import Workspace
    from azureml.core.authentication import ServicePrincipalAuthentication
    from azureml.core.compute import AksCompute, ComputeTarget
    from azureml.core.environment import Environment
    from azureml.core.model import InferenceConfig, Model
    from azureml.core.webservice import AksWebservice, Webservice
    from azureml.exceptions import ComputeTargetException, WebserviceException


def __getattr__(name: str) -> Any:
    """The SDK's class ``name``, its module imported on first use (after the settings above)."""
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = getattr(importlib.import_module(_FROM[name]), name)
    globals()[name] = found
    return found


__all__ = [
    "SDK_IMPORTED_EARLY",
    "SDK_SETTINGS",
    "AksCompute",
    "AksWebservice",
    "ComputeTarget",
    "ComputeTargetException",
    "Environment",
    "InferenceConfig",
    "Model",
    "ServicePrincipalAuthentication",
    "Webservice",
    "WebserviceException",
    "Workspace",
]
