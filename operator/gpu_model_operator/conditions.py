"""Condition types, reasons and event reasons: the words users search for, kept in one place.

Reasons are CamelCase, as in ``metav1.Condition``; the README's table explains what to do for each.
"""

from __future__ import annotations

# Condition types
COMPUTE_READY = "ComputeReady"
SERVICE_READY = "ServiceReady"
READY = "Ready"
# kstatus's two abnormal-true conditions, derived from the phase and Ready (kstatus.py): True while the operator
# works towards the spec, True when it cannot get there without the user.
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons: progress
PROVISIONING = "Provisioning"
COMPUTE_AVAILABLE = "ComputeAvailable"
COMPUTE_ADOPTED = "ComputeAdopted"
DEPLOYING = "Deploying"
UPDATING = "Updating"
SERVICE_HEALTHY = "ServiceHealthy"
PROBE_SUCCEEDED = "ProbeSucceeded"
PROBE_PENDING = "ProbePending"
WAITING_FOR_COMPUTE = "WaitingForCompute"
WAITING_FOR_SERVICE = "WaitingForService"
RECONCILE_SKIPPED = "ReconcileSkipped"
#: (azureml-v2) A canary step (or the mirroring) holds, its check judged on every pass.
CANARY_IN_PROGRESS = "CanaryInProgress"
#: Ready False (and ServiceReady/ComputeReady while theirs are removed) from the first deletion step to the last.
DELETING = "Deleting"

# Reasons: problems a user must act on
REPLICAS_CAPPED = "ReplicasCapped"
INSUFFICIENT_GPUS = "InsufficientGPUs"
INVALID_SPEC = "InvalidSpec"
SOURCE_NOT_FOUND = "SourceNotFound"
CREDENTIALS_INVALID = "CredentialsInvalid"
IDENTITY_NOT_ALLOWED = "IdentityNotAllowed"
MODEL_NOT_FOUND = "ModelNotFound"
QUOTA_EXCEEDED = "QuotaExceeded"
INVALID_VM_SIZE = "InvalidVmSize"
COMPUTE_FAILED = "ComputeFailed"
SERVICE_FAILED = "ServiceFailed"
SERVICE_CONFLICT = "ServiceNameConflict"
SERVICE_EXISTS = "ServiceExists"
#: (azureml-v2) Azure still holds the endpoint's name after a deletion: waited for, never a failure.
NAME_HELD = "EndpointNameHeld"
SECRET_CONFLICT = "SecretConflict"
BACKEND_NOT_ENABLED = "BackendNotEnabled"
SCALE_FAILED = "ScaleFailed"
#: (azureml-v2) A canary step failed its check, or the user aborted the rollout: the traffic goes back to the live
#: deployment, which gets back what the rollout borrowed, and the new deployment is deleted (then ServiceFailed).
CANARY_FAILED = "CanaryFailed"
ENVIRONMENT_FAILED = "EnvironmentFailed"
PROBE_FAILED = "ProbeFailed"
BACKEND_UNAVAILABLE = "BackendUnavailable"
BACKEND_FAILED = "BackendFailed"
CALL_BUDGET_EXHAUSTED = "CallBudgetExhausted"
CPU_FALLBACK = "CpuFallback"
ENVIRONMENT_WARNING = "EnvironmentWarning"

# Event reasons that are not also condition reasons
CREATED_COMPUTE = "CreatingCompute"
DEPLOYED_SERVICE = "DeployingService"
SCALED_SERVICE = "ScalingService"
REDEPLOYED_SERVICE = "RedeployingService"
DELETED_SERVICE = "DeletingService"
RETAINED_SERVICE = "RetainedService"
DELETED_COMPUTE = "DeletedCompute"
RETAINED_COMPUTE = "RetainedCompute"
DETACHED_COMPUTE = "DetachedCompute"
KEYS_PUBLISHED = "KeysPublished"
RETRYING = "Retrying"
#: The promote and abort annotations, acted on (or found with nothing to act on) and removed.
PROMOTED = "Promoted"
ABORTED = "Aborted"
DETACHED = "Detached"
