"""What the end-to-end tests share: waiting with a deadline, and a GpuModelDeployment driven through kubectl."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gpu_model_operator.backends.local import processes as procs
from gpu_model_operator_dev.digits_model import TrainedModel
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.polling import wait_for

__all__ = ["ROOT", "Deployment", "alive", "replica_pids", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]


class Deployment:
    """One GpuModelDeployment in its own namespace, read and changed through kubectl."""

    def __init__(self, cp: Any, namespace: str, model: TrainedModel, operator: OperatorProcess) -> None:
        self.cp, self.ns, self.model, self.operator = cp, namespace, model, operator
        self.name = "digits"

    def apply(
        self,
        replicas: int = 1,
        score_py: str | None = None,
        annotations: dict[str, str] | None = None,
        conda: str | None = None,
        name: str | None = None,
    ) -> None:
        docs = list(yaml.safe_load_all(self.cp.kubectl("kustomize", str(ROOT / "manifests/examples/local")).stdout))
        for doc in docs:
            if doc["kind"] == "ConfigMap" and score_py is not None:
                doc["data"]["score.py"] = score_py
            if doc["kind"] == "ConfigMap" and conda is not None:
                doc["data"]["myenv.yml"] = conda
            if doc["kind"] == "GpuModelDeployment":
                doc["metadata"]["name"] = name or self.name
                doc["metadata"]["annotations"] = annotations or {}
                doc["spec"]["model"]["path"] = str(self.model.model_dir)
                doc["spec"]["service"]["replicas"] = replicas
                doc["spec"]["local"]["allowCpuFallback"] = False  # the declared GPUs are used instead
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def get(self) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "gmd", self.name, "-n", self.ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.get().get("status", {}).get("conditions", []) if c["type"] == type_), None)

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get()
            cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
            current = cond and cond["status"] == "True" and cond["observedGeneration"] == obj["metadata"]["generation"]
            return obj if current else None

        try:
            return wait_for("Ready", ready, timeout)
        except AssertionError:
            raise AssertionError(f"not Ready: {self.get().get('status')}\n{self.operator.log_tail()}") from None

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        out = self.cp.kubectl("get", "events", "-n", self.ns, "-o", "json").stdout
        items = [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == self.name]
        return [e for e in items if reason is None or e["reason"] == reason]

    def keys(self) -> dict[str, str]:
        name = self.get()["status"]["keysSecretName"]
        secret = json.loads(self.cp.kubectl("get", "secret", name, "-n", self.ns, "-o", "json").stdout)
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    def score(self, images: list[list[float]], key: str | None) -> tuple[int, Any]:
        uri = self.keys()["scoringUri"]
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(uri, data=json.dumps({"data": images}).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, None

    def service_state(self, state_dir: Path) -> dict[str, Any]:
        return json.loads((state_dir / "services" / f"{self.ns}.{self.name}" / "state.json").read_text())  # type: ignore[no-any-return]


def replica_pids(state: dict[str, Any]) -> list[int]:
    return sorted(r["pid"] for r in state["replicas"])


def alive(pid: int) -> bool:
    """Running (a zombie left for its reaper does not count), whatever the program."""
    return procs.alive(pid)
