"""Secrets hygiene across the whole session: no client secret or scoring key in any log, event or status.

Runs after every other test (``audit`` marker). The values come from a watch on every Secret the session's
control plane held (``tests/secrets_seen.py``): the service principals' client secrets, right and wrong, and
every scoring key the operator published, from either backend. They are looked for in every log file the
session wrote (operators, serving processes, the control plane), and in every Event and GpuModelDeployment
still in the API server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_model_operator_dev.controlplane import ControlPlane
from tests import secrets_seen


@pytest.mark.audit
def test_no_secret_value_in_any_log_event_or_status(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seen = secrets_seen.values()
    if not seen["clientSecret"] or not seen["primaryKey"]:
        pytest.skip("no test of this session published credentials and scoring keys to audit")
    secrets = {value for found in seen.values() for value in found if len(value) >= 8}

    logs = sorted(Path(tmp_path_factory.getbasetemp()).rglob("*.log"))
    assert any(p.name.endswith("operator.log") for p in logs), "the operators' logs were not found"
    places = {str(p): p.read_text(errors="replace") for p in logs}
    places["events"] = control_plane.kubectl("get", "events", "-A", "-o", "json").stdout
    places["gpumodeldeployments"] = control_plane.kubectl("get", "gmd", "-A", "-o", "json").stdout
    assert json.loads(places["events"])["items"], "no events to audit"

    leaks = sorted({(where, value[:4] + "...") for where, text in places.items() for value in secrets if value in text})
    assert not leaks, f"secret values found in: {leaks}"
    print(f"audited {len(secrets)} secret values in {len(logs)} log files, the events and the statuses")
