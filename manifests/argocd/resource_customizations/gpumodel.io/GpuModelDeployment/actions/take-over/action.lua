-- Let the operator own the service it found (ServiceExists) or the compute it adopted (ComputeAdopted): it
-- redeploys the service from this spec and deletes what it owns with the resource (README, Trust). Keep the
-- annotation for as long as the operator should own a compute it took over.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["gpumodel.io/take-over"] = "true"
return obj
