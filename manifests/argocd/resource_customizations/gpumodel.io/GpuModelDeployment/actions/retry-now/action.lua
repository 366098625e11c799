-- Retry a failure at once: the operator acts once on each new value of gpumodel.io/retry-now (README, Status
-- conditions). The new value is one more than the last one set or acted on, so two clicks in the same second
-- are two retries, and the script needs no clock.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local last = tonumber(obj.metadata.annotations["gpumodel.io/retry-now"]) or 0
local handled = nil
if obj.status ~= nil and obj.status.retry ~= nil then
  handled = tonumber(obj.status.retry.handledToken)
end
if handled ~= nil and handled > last then
  last = handled
end
obj.metadata.annotations["gpumodel.io/retry-now"] = tostring(last + 1)
return obj
