"""The azureml backend's own-session reads against the SDK's: the same refusals classified the same way, the same
objects read back, the same "not found". Real parts: azureml-core and the emulator, in a subprocess pointed at
it (``azureml_reads_check.py``); and the hashed CA directory against OpenSSL's own subject hashes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, start_emulator

CHECK = Path(__file__).resolve().parent / "azureml_reads_check.py"
CLIENT_ID, CLIENT_SECRET = "reads-check", "not-a-secret"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("reads")
    with start_emulator(state, EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET})) as emu:
        emu.seed(
            computes=[{"name": "gpu-a", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 2, "tags": {"a": "b"}}],
            services=[
                {"name": f"svc-{x}", "computeName": "gpu-a", "numReplicas": 1, "kvTags": {"gpumodel.io/owner": x}}
                for x in "abc"
            ],
        )
        yield run_check(emu, state)


def run_check(emu: Emulator, home: Path) -> dict[str, Any]:
    env = emu.client_env()
    env.update(HOME=str(home), AZUREML_LOG_DEPRECATION_WARNING_ENABLED="False")
    args = [sys.executable, str(CHECK), emu.base_url, str(emu.ca_file), CLIENT_ID, CLIENT_SECRET]
    proc = subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_every_refusal_is_classified_as_the_sdks(outcome: dict[str, Any]) -> None:
    cases = outcome["cases"]
    assert len(cases) == 4 * 7
    differ = [c for c in cases if c["sdk"] != c["reads"]]
    assert differ == [], json.dumps(differ, indent=1)
    throttled = [c["reads"] for c in cases if c["fault"] == "429 with Retry-After"]
    assert all(t["error"] == "TransientBackendError" and t["retry_after"] == 7 for t in throttled), throttled


def test_the_same_objects_come_back(outcome: dict[str, Any]) -> None:
    same = outcome["same"]
    assert same["service"] == {"types": ["AksWebservice", "AksWebservice"], "differ": []}
    assert same["compute"] == {"types": ["AksCompute", "AksCompute"], "differ": []}
    assert same["listing"]["sdk"] == same["listing"]["reads"] == ["svc-a", "svc-b", "svc-c"]
    assert same["keys"] == {"equal": True}
    assert outcome["missing"] == {"service": [True, True], "compute": [True, True]}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to compare with")
def test_subject_hashes_are_openssls(tmp_path: Path) -> None:
    """The hashed CA directory names each CA as ``openssl rehash`` would, for every root certifi ships."""
    from gpu_model_operator.backends.azure.tls import write_hashed_directory

    written = write_hashed_directory(Path(certifi.where()).read_bytes(), tmp_path)
    assert written > 100 and len(list(tmp_path.iterdir())) == written
    for file in tmp_path.iterdir():
        expected = subprocess.run(
            ["openssl", "x509", "-noout", "-subject_hash"],
            input=file.read_text(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert file.name.split(".")[0] == expected
