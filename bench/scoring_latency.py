"""Median scoring latency through the local backend's scoring URL versus the bare inference server.

Both serve the same example score.py and model in the same process (one replica); the difference is the
key-checking router in front. Reports medians over several rounds and their ratio (goal: <= 1.1x).
Run: .venv/bin/python bench/scoring_latency.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from gpu_model_operator.backends.base import DeploymentInputs, ServiceState
from gpu_model_operator.backends.local.backend import LocalBackend
from gpu_model_operator.models import GpuModelDeploymentSpec
from gpu_model_operator_dev.digits_model import train

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT / "manifests" / "examples" / "digits-source"


def timed_posts(url: str, body: bytes, headers: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        request = urllib.request.Request(url, data=body, headers=headers)
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
        out.append(time.perf_counter() - start)
    return out


async def main(rounds: int = 5, per_round: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = train(Path(tmp) / "model")
        spec = GpuModelDeploymentSpec.model_validate(
            {
                "backend": "local",
                "model": {"path": str(model.model_dir)},
                "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
                "service": {"name": "bench-svc", "replicas": 1},
                "local": {"allowCpuFallback": True},
            }
        )
        inputs = DeploymentInputs(
            "bench", "bench", "uid", 1, spec, (SOURCE / "score.py").read_text(), (SOURCE / "myenv.yml").read_text(),
            fingerprint="bench",
        )  # fmt: skip
        backend = LocalBackend(Path(tmp) / "state", declared_gpus=1)
        await backend.deploy_service(inputs, 1)
        deadline = time.monotonic() + 600
        while (obs := await backend.observe_service(inputs)).state != ServiceState.HEALTHY:
            if obs.state == ServiceState.UNHEALTHY:
                await backend.scale_service(inputs, 1)
            assert time.monotonic() < deadline, obs
            await asyncio.sleep(0.5)
        state = json.loads((Path(tmp) / "state/services/bench.bench/state.json").read_text())
        keys = await backend.get_keys(inputs)
        assert keys is not None
        key = keys[0]
        body = json.dumps({"data": [model.test_images[0].tolist()]}).encode()
        headers = {"Content-Type": "application/json"}
        bare = f"http://127.0.0.1:{state['replicas'][0]['port']}/score"
        routed = obs.scoring_uri or ""
        timed_posts(bare, body, headers, 20)  # warm-up
        timed_posts(routed, body, {**headers, "Authorization": f"Bearer {key}"}, 20)
        ratios = []
        print(f"{'round':>5} {'bare ms':>9} {'routed ms':>10} {'ratio':>6}")
        for i in range(rounds):
            b = statistics.median(timed_posts(bare, body, headers, per_round)) * 1000
            r = statistics.median(timed_posts(routed, body, {**headers, "Authorization": f"Bearer {key}"}, per_round))
            r *= 1000
            ratios.append(r / b)
            print(f"{i:>5} {b:>9.3f} {r:>10.3f} {r / b:>6.2f}")
        print(f"median ratio routed/bare over {rounds} rounds of {per_round}: {statistics.median(ratios):.2f}x")
        await backend.delete_service(inputs)


if __name__ == "__main__":
    asyncio.run(main())
