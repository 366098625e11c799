"""Azure ML's documented rules for online endpoints that the v2 store applies: names, limits, the answers of a name
Azure still holds or another endpoint has, why a deployment fails and what its logs show then, and usages by scope.

Each rule names its source; where Azure's documentation is silent (a wording, a duration), the docstring says so and
the emulator's choice is marked as its own.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .store_errors import ArmError

# ---- names and limits ---------------------------------------------------------------------------------------------

#: Endpoint and deployment names: a letter first, letters, digits and single dashes, a letter or digit last,
#: 3 to 32 characters (how-to-manage-quotas, "Endpoint name" / "Deployment name": "Begin with a letter; Be 3-32
#: characters in length; Only consist of letters and numbers" with "Single dashes like my-endpoint-name are
#: accepted"; azure-ai-ml's own check, ``EndpointConfigurations.NAME_REGEX_PATTERN``, ends with a letter or digit).
ENDPOINT_NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
#: Compute names: 3 to 24 letters, digits and dashes, a letter first, "If - character is used, then it needs to be
#: followed by at least one letter later in the name" (Azure ML's compute pages, e.g. how-to-create-attach-compute-
#: studio); the REST specification's ``computeName`` pattern says the same for a trailing "-digits".
COMPUTE_NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9]*|[a-zA-Z0-9-]*-[a-zA-Z0-9]*[a-zA-Z][a-zA-Z0-9]*)$")
#: "Number of instances per deployment: 50" for managed online endpoints (how-to-manage-quotas; more needs a limit
#: increase from Azure support, which the emulator's ``max_instances`` setting stands for).
MAX_MANAGED_INSTANCES = 50
#: "For Kubernetes endpoint, the endpoint name plus deployment name must be 6-62 characters in total length".
KUBERNETES_NAMES_LENGTH = (6, 62)


def name_problem(kind: str, name: str) -> str | None:
    """Why Azure refuses ``name`` for an ``endpoint``, ``deployment`` or ``compute``, or None."""
    if kind == "compute":
        if not 3 <= len(name) <= 24 or not COMPUTE_NAME.match(name):
            return (
                f"Compute name '{name}' is invalid: it must be 3 to 24 characters long, start with a letter, have only "
                "letters, digits and dashes, and a dash must be followed later by a letter."
            )
        return None
    if not 3 <= len(name) <= 32 or not ENDPOINT_NAME.match(name) or "--" in name:
        return (
            f"The name for {'an endpoint' if kind == 'endpoint' else 'a deployment'} '{name}' is invalid: it must be 3 "
            "to 32 characters long, start with a letter, and consist of letters, digits and single dashes, ending "
            "with a letter or digit."
        )
    return None


def validation_problem(field: str, message: str, code: str = "InferencingClientCallFailed") -> ArmError:
    """A refusal of the inferencing front end as Azure answers it: 400 ``BadRequest`` "The request is invalid."
    with a detail whose message is an RFC 7807 validation problem (Azure/azure-sdk-for-python#35109 for
    ``InferencingClientCallFailed`` with ``errors: {"": [...]}``, MicrosoftLearning/mslearn-azure-ml#30 for the
    deployment variant with ``InferencingClientCreateDeploymentFailed`` and a named field)."""
    problem: dict[str, Any] = {"errors": {field: [message]}, "title": "One or more validation errors occurred."}
    text = json.dumps(problem, separators=(",", ":"))
    if code == "InferencingClientCreateDeploymentFailed":
        problem.update(type="https://tools.ietf.org/html/rfc7231#section-6.5.1", status=400)
        problem["traceId"] = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        text = f"InferencingClient HttpRequest error, error detail: {json.dumps(problem, separators=(',', ':'))}"
    return ArmError(400, "BadRequest", "The request is invalid.", [{"code": code, "message": text}])


def region_clash(name: str) -> ArmError:
    """Another endpoint of this name in the region (any subscription: the name is the scoring host): a 400
    validation problem, not a 409 (Azure/azureml-examples#1930 posts the message, "There is already an endpoint
    with this name, Endpoint name needs to be unique within a region. Try some other name."; the envelope is the
    management front end's, as for the other endpoint validation problems)."""
    return validation_problem(
        "",
        "There is already an endpoint with this name, Endpoint name needs to be unique within a region. "
        "Try some other name.",
    )


def held_after_deletion(name: str) -> ArmError:
    """A managed endpoint name Azure still holds after its deletion: the PUT is answered 404 ``NotFound`` "The
    specified resource was not found." with an ``InferencingClientCallFailed`` detail ``{"title":"Not Found"}``
    (posted verbatim in Azure/azure-cli-extensions#7660 and Azure/azure-cli-extensions#7107, re-creating an endpoint
    just deleted). For how long Azure holds it the documentation does not say (``V2Config.endpoint_name_hold_s``)."""
    return ArmError(
        404,
        "NotFound",
        "The specified resource was not found.",
        [{"code": "InferencingClientCallFailed", "message": '{"title":"Not Found"}'}],
    )


def exists_in_cluster(name: str, workspace: str, resource_group: str) -> ArmError:
    """A Kubernetes endpoint name the cluster still has (just deleted, or another workspace's on the same cluster):
    400 with "OnlineEndpoint {name} already exists in cluster, in workspace {ws} of resource group {rg}. Please
    notice endpoint name must be unique per cluster." (Azure/azure-sdk-for-python#35109)."""
    return validation_problem(
        "",
        f"OnlineEndpoint {name} already exists in cluster, in workspace {workspace} of resource group "
        f"{resource_group}. Please notice endpoint name must be unique per cluster.",
    )


# ---- why a deployment fails ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureReason:
    """A documented failure of a deployment's operation (how-to-troubleshoot-online-endpoints, "Common deployment
    errors": "Deployment operation status can report the following common deployment errors")."""

    code: str
    message: str
    #: The container ran (so ``getLogs`` has its console): only a crash after start.
    container_started: bool
    #: The operation's terminal status and the deployment's provisioning state.
    status: str = "Failed"


REASONS: dict[str, FailureReason] = {
    r.code.lower(): r
    for r in (
        # "This error returns when the Docker image environment is being built ... The exact location might be
        # returned as part of the error" (ERROR: ImageBuildFailure); the account and path are the emulator's.
        FailureReason(
            "ImageBuildFailure",
            "Image build failed. For more details, check the build log under the storage account 'emuacct' in the "
            "container 'azureml' at the path 'ImageLogs/build.log'.",
            container_started=False,
        ),
        # ERROR: OutOfQuota ("CPU quota ... per subscription, per workspace, per SKU, and per region"); the
        # operation's wording is not documented, this is the emulator's.
        FailureReason(
            "OutOfQuota",
            "Not enough quota available to provision the deployment's instances. Please see troubleshooting guide, "
            "available here: https://aka.ms/oe-tsg#error-outofquota",
            container_started=False,
        ),
        # "Region-wide VM capacity: Due to a lack of Azure Machine Learning capacity in the region, the service
        # failed to provision the specified VM size." The current page files it under OutOfQuota; an older
        # revision named it "Out of capacity" (MicrosoftDocs/azure-docs#78043), the code here.
        FailureReason(
            "OutOfCapacity",
            "Due to a lack of Azure Machine Learning capacity in the region, the service failed to provision the "
            "specified VM size. Retry later or try deploying to a different region.",
            container_started=False,
        ),
        # ERROR: ResourceNotReady: "this container crashes when running"; the message is the one Azure returns with
        # its troubleshooting link (as the existing emulator had it).
        FailureReason(
            "ResourceNotReady",
            "User container has crashed or terminated. Please see troubleshooting guide, available here: "
            "https://aka.ms/oe-tsg#error-resourcenotready",
            container_started=True,
        ),
        # ERROR: OperationCanceled, "Operation canceled waiting for lock confirmation ... Retrying the operation
        # after waiting up to a minute might allow it to perform without cancellation": a transient state.
        FailureReason(
            "OperationCanceled",
            "The operation was canceled due to a previous operation waiting for lock confirmation. Retrying the "
            "operation after waiting up to a minute might allow it to perform without cancellation.",
            container_started=False,
            status="Canceled",
        ),
    )
}
#: The console of a container that crashed in ``init()`` when a rule gives none (the emulator's example).
CRASH_LOG = [
    "Azure ML Inferencing HTTP server v1.3.0",
    "Initializing logger",
    "Traceback (most recent call last):",
    '  File "/var/azureml-app/score.py", line 12, in init',
    "RuntimeError: init() failed: the model could not be loaded",
]
#: What ``getLogs`` answers for a container that is not up: the documentation says only "If the specified container
#: is up and running, you see its console output. Otherwise, you get a message to try again later."
#: (how-to-troubleshoot-online-endpoints, "Get container logs"); the wording is the emulator's.
NOT_STARTED = "The container of deployment '{deployment}' is not running yet; logs are not available. Try again later."


def reason(code: str | None) -> FailureReason:
    """The documented failure ``code`` (ResourceNotReady when none is named); an undocumented code fails like a
    container that never started, with the rule's own message."""
    found = REASONS.get(str(code or "ResourceNotReady").lower())
    return found or FailureReason(str(code), f"The deployment failed ({code}).", container_started=False)


def console_lines(rule: dict[str, Any]) -> list[str]:
    return [str(line) for line in (rule.get("logs") or CRASH_LOG)]


def check_mirror(endpoint: str, compute: str | None, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    """Mirrored traffic as Azure limits it (how-to-safely-rollout-online-endpoints, "Mirroring has the following
    limitations" and "Also note the following behavior"): "You can only mirror traffic to one deployment", "Mirror
    traffic isn't currently supported for Kubernetes online endpoints", and "A deployment can only be set to live or
    mirror traffic, not both" (the 50% cap is the specification's, checked with the split). Azure refuses such an
    update; its status and wording are not documented: 400 BadArgument as for the split, in the emulator's words."""
    mirrored = {k.lower(): v for k, v in mirror.items() if v}
    if not mirrored:
        return
    if compute:
        raise ArmError(
            400, "BadArgument", f"Mirror traffic is not supported for Kubernetes online endpoint '{endpoint}'."
        )
    if len(mirrored) > 1:
        raise ArmError(400, "BadArgument", f"Traffic can only be mirrored to one deployment, not {len(mirrored)}.")
    both = [k for k, v in traffic.items() if v and k.lower() in mirrored]
    if both:
        raise ArmError(
            400, "BadArgument", f"Deployment '{both[0]}' cannot take live and mirror traffic at the same time."
        )
