"""azureml-core as the backend uses it: imported here once, after its retry settings are switched off.

The SDK reads these settings once, when ``azureml._restclient.clientbase`` is first imported: by default it
retries each HTTP call 3 times itself, sleeping 32/64/128 s on a 429 (whatever Retry-After says) and 2-10 s on a
503, inside the operator's own backoff. Every module of this backend takes the SDK's classes from here, so
whichever is imported first, the settings come before the SDK; a deployer may still set any of them in the
environment. Only the operator process imports this (``errors`` imports no SDK and sets nothing).
"""

from __future__ import annotations

import os
import sys

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

from azureml.core import Workspace  # noqa: E402
from azureml.core.authentication import ServicePrincipalAuthentication  # noqa: E402
from azureml.core.compute import AksCompute, ComputeTarget  # noqa: E402
from azureml.core.environment import Environment  # noqa: E402
from azureml.core.model import InferenceConfig, Model  # noqa: E402
from azureml.core.webservice import AksWebservice, Webservice  # noqa: E402
from azureml.exceptions import ComputeTargetException, WebserviceException  # noqa: E402

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
