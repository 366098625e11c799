"""The annotations a user (or Argo CD's resource actions) sets on a GpuModelDeployment, in one place: what each
key is and what its values mean. Vocabulary only."""

from __future__ import annotations

#: How the operator treats the resource, as Azure Service Operator's annotation does: ``manage`` (the default),
#: ``skip`` (leave the backend as it is) or ``detach-on-delete`` (manage, but deleting the resource leaves
#: what it made running). Anything else is refused with InvalidSpec.
RECONCILE_POLICY = "gpumodel.io/reconcile-policy"
POLICY_MANAGE, POLICY_SKIP, POLICY_DETACH = "manage", "skip", "detach-on-delete"
POLICIES = (POLICY_MANAGE, POLICY_SKIP, POLICY_DETACH)
#: The policies under which passes call the backend (detach-on-delete changes only what deletion does).
MANAGING = (POLICY_MANAGE, POLICY_DETACH)
#: Changing this annotation (any value) retries at once, e.g. a failed deployment after its cause was fixed.
RETRY_NOW = "gpumodel.io/retry-now"
#: Opt-in (``true``) to take over what existed before under the spec's names: without it, it is only observed.
TAKE_OVER = "gpumodel.io/take-over"
#: ``true``: the online endpoint's rollout under way skips its remaining canary steps (and the mirroring): all traffic
#: to the new deployment at once, once it answers the scoring probe. The operator removes it once acted on.
PROMOTE = "gpumodel.io/promote"
#: ``true``: the rollout under way is given up now: all traffic back to the live deployment, which gets back what the
#: rollout borrowed, and the new deployment is deleted. The operator removes it once acted on (the status keeps why).
ABORT = "gpumodel.io/abort"
