"""The Azure plumbing both Azure backends stand on, written once.

- ``calls``: the one door every Azure call of either backend passes (:class:`~.calls.Calls`): the bounded thread
  pool the SDKs' blocking calls run in, the timeouts, the Retry-After gate, and each call's scope (subscription,
  workspace, principal) and kind (read or write), where a call budget per subscription and principal belongs.
- ``failures``: one classification table of Azure failures (Entra's sign-in errors, 401/403, 429 with
  Retry-After, 5xx/408, no answer, quota, a busy resource, a missing workspace), with a hook for each backend's
  own (:class:`~.failures.Dialect`: the SDK v1's free-text errors, the SDK v2's RFC 7807 problem fields).
- ``connections``: the signed-in clients, one per workspace and credential; ``scoring``: the services' scoring
  keys, dropped when a probe is refused with them.
- ``arm``: plain ARM requests through azure-mgmt-core's public ``ARMPipelineClient``; ``tls``: the trusted CAs.

Nothing here imports a backend or a backend's SDK (``azureml-core``, ``azure-ai-ml``): the backends stand on it.
"""
