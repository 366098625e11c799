"""Condition types, reasons and event reasons: the words users search for, kept in one place.

Reasons are CamelCase, as in ``metav1.Condition``; the README's table explains what to do for each.
"""

from __future__ import annotations

# Condition types
COMPUTE_READY = "ComputeReady"
SERVICE_READY = "ServiceReady"
READY = "Ready"
CONDITION_TYPES = (COMPUTE_READY, SERVICE_READY, READY)

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
SECRET_CONFLICT = "SecretConflict"
BACKEND_NOT_ENABLED = "BackendNotEnabled"
SCALE_FAILED = "ScaleFailed"
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
DETACHED = "Detached"
