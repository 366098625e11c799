"""GPU Model Operator: serve deep-learning models on GPUs from a Kubernetes custom resource.

The layers, imported only downwards: ``handlers`` (kopf wiring) → ``reconcile`` (the pure decision core)
→ ``backends`` (Azure ML, local). ``models`` and ``conditions`` are shared vocabulary.
"""

GROUP = "gpumodel.io"
VERSION = "v1alpha1"
PLURAL = "gpumodeldeployments"
KIND = "GpuModelDeployment"
FINALIZER = "gpumodel.io/finalizer"

__version__ = "0.1.0"
