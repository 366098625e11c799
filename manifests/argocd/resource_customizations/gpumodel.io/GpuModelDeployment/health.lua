-- Argo CD health check for gpumodel.io/GpuModelDeployment.
-- Healthy: the Ready condition is True for the current generation and the phase is not Degraded.
-- Degraded: phase Failed or Degraded (e.g. replicas capped at the GPUs available), or a Ready reason that
-- only a change by the user can clear. Suspended: the reconcile-policy annotation says skip.
-- Progressing: everything else, including a status the operator has not written yet for this generation, and an
-- online endpoint's canary in progress (Ready's reason CanaryInProgress). A canary that failed its check or was
-- aborted (CanaryFailed, phase Degraded, while the traffic goes back) is Degraded, as is the failed service after.
-- It calls nothing beyond Lua's base and table libraries, so it gives the same answers as a built-in check
-- (standard libraries open) and as an argocd-cm customization (standard libraries closed).
local hs = {}

local permanentReasons = {
  InvalidSpec = true,
  CredentialsInvalid = true,
  IdentityNotAllowed = true,
  ModelNotFound = true,
  QuotaExceeded = true,
  InvalidVmSize = true,
  ComputeFailed = true,
  ServiceFailed = true,
  ServiceNameConflict = true,
  ServiceExists = true,
  SecretConflict = true,
  BackendNotEnabled = true,
  EnvironmentFailed = true,
  InsufficientGPUs = true,
  CanaryFailed = true,
}

local function findCondition(status, conditionType)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function describe(ready, status, fallback)
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    return ready.message
  end
  if status.lastError ~= nil and status.lastError ~= "" then
    return status.lastError
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata.generation

if status == nil or next(status) == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local ready = findCondition(status, "Ready")
local phase = status.phase or "Pending"

if obj.metadata.deletionTimestamp ~= nil or phase == "Deleting" then
  hs.status = "Progressing"
  hs.message = "Deleting: " .. describe(ready, status, "removing the service and compute")
  return hs
end

if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  hs.status = "Progressing"
  if status.observedGeneration == nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  end
  return hs
end

if ready ~= nil and ready.reason == "ReconcileSkipped" then
  hs.status = "Suspended"
  hs.message = describe(ready, status, "the operator leaves the backend as it is")
  return hs
end

if phase == "Failed" or phase == "Degraded" or (ready ~= nil and permanentReasons[ready.reason]) then
  hs.status = "Degraded"
  hs.message = describe(ready, status, "phase " .. phase)
  return hs
end

if ready ~= nil and ready.status == "True" and ready.observedGeneration == generation then
  hs.status = "Healthy"
  hs.message = describe(ready, status, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, status, "phase " .. phase)
return hs
