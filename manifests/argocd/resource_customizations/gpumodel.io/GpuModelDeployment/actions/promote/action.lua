-- Skip the remaining canary steps of the rollout under way (azureml-v2): the operator gives the new deployment all
-- the traffic once it answers its scoring probe, then removes the annotation (README, Rollouts).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["gpumodel.io/promote"] = "true"
return obj
