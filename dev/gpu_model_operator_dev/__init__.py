"""Development tools of the GPU Model Operator, shipped apart from it (never in its wheel or image).

- ``controlplane``: a real kube-apiserver + etcd on loopback, built from the pinned Kubernetes modules.
- ``operator_process``: the operator run as a child process, for the demos and the end-to-end tests.
- ``azureml_emulator``: the HTTPS Azure ML emulator the real SDKs talk to in tests, demos and benchmarks.
- ``digits_model``: the small scikit-learn model the examples serve.
"""
