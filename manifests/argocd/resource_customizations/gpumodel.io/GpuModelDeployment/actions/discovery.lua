-- Argo CD resource actions for gpumodel.io/GpuModelDeployment: what a user does with `kubectl annotate`,
-- from the Argo CD UI or `argocd app actions run APP ACTION --kind GpuModelDeployment`.
-- retry-now: retry a failure at once (phase Failed, or Ready False), after fixing what it names outside the
--   spec (a Secret, a role, a ConfigMap edited in place).
-- take-over: let the operator own a service it found (ServiceExists) or a compute it adopted
--   (ComputeAdopted): it then redeploys the service from the spec and deletes both with the resource.
-- detach-on-delete: delete the resource without touching what it made (left running, and billing).
-- promote: skip the remaining canary steps of the rollout under way (azureml-v2): all the traffic to the new
--   deployment once it answers its probe. Offered while a canary step holds.
-- abort: give up the rollout under way now: all the traffic back to the live deployment, which gets back what the
--   rollout borrowed; the new deployment is deleted. Offered while a new deployment is on its way to the traffic.
-- Each is offered only where it would do something; none while the resource is deleting except
-- detach-on-delete, which lets a deletion that cannot finish go. Base and table libraries only, as the
-- health check: Argo CD runs customizations from argocd-cm without the others.
local actions = {}

local function findCondition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local annotations = obj.metadata.annotations or {}
local status = obj.status or {}
local deleting = obj.metadata.deletionTimestamp ~= nil
local ready = findCondition("Ready")
local compute = findCondition("ComputeReady")

local failed = status.phase == "Failed" or (ready ~= nil and ready.status == "False")
actions["retry-now"] = {
  ["disabled"] = deleting or not failed,
  ["displayName"] = "Retry now",
  ["iconClass"] = "fa fa-fw fa-redo",
}

local found = (ready ~= nil and ready.reason == "ServiceExists")
  or (compute ~= nil and compute.reason == "ComputeAdopted")
actions["take-over"] = {
  ["disabled"] = deleting or not found or annotations["gpumodel.io/take-over"] == "true",
  ["displayName"] = "Take over",
  ["iconClass"] = "fa fa-fw fa-hand-paper",
}

local rollout = status.rollout
local towards = {CreateDeployment = true, MakeRoom = true, Probe = true, MirrorTraffic = true, Hold = true,
  ShiftTraffic = true}
local underWay = rollout ~= nil and rollout.abandoned == nil and towards[rollout.step] == true
local holding = underWay and rollout.canary ~= nil and rollout.canary.verdict == "Holding"
actions["promote"] = {
  ["disabled"] = deleting or not holding or annotations["gpumodel.io/promote"] == "true",
  ["displayName"] = "Promote",
  ["iconClass"] = "fa fa-fw fa-forward",
}
actions["abort"] = {
  ["disabled"] = deleting or not underWay or annotations["gpumodel.io/abort"] == "true",
  ["displayName"] = "Abort rollout",
  ["iconClass"] = "fa fa-fw fa-undo",
}

actions["detach-on-delete"] = {
  ["disabled"] = annotations["gpumodel.io/reconcile-policy"] == "detach-on-delete",
  ["displayName"] = "Detach on delete",
  ["iconClass"] = "fa fa-fw fa-unlink",
}

return actions
