-- Give up the rollout under way (azureml-v2): the operator moves all the traffic back to the live deployment, gives it
-- back what the rollout borrowed and deletes the new one, then removes the annotation (README, Rollouts).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["gpumodel.io/abort"] = "true"
return obj
