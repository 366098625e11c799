-- Delete the resource without touching what it made: the service and compute are left running, and billing
-- (README, Status conditions). Also what lets a deletion go that cannot finish (a credentials Secret deleted
-- first, a backend no longer enabled).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["gpumodel.io/reconcile-policy"] = "detach-on-delete"
return obj
