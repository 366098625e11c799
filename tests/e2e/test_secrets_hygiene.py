"""Secrets hygiene across the whole session: no client secret or scoring key in any log, event or status.

Runs after every other test (``audit`` marker). The values come from a watch on every Secret the session's
control plane held (``tests/secrets_seen.py``): the service principals' client secrets, right and wrong, and
every scoring key the operator published, from either backend. They are looked for in every log file the
session wrote (operators, serving processes, the control plane), and in every Event and GpuModelDeployment
still in the API server. When the suite runs in parallel, the audit waits for the other workers to end and reads
what each one's control plane held, saved as it stopped (``tests/parallel.py``).
"""

from __future__ import annotations

import json

import pytest

from gpu_model_operator_dev.controlplane import ControlPlane
from tests import parallel

#: How long the audit waits for the other workers to end: the longest a worker's share of the suite may take.
WAIT_FOR_WORKERS_S = 1500


@pytest.mark.audit
@pytest.mark.timeout(WAIT_FOR_WORKERS_S + 120)
def test_no_secret_value_in_any_log_event_or_status(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    planes = [*parallel.other_workers_evidence(tmp_path_factory, WAIT_FOR_WORKERS_S), parallel.evidence(control_plane)]
    seen = {key: {v for plane in planes for v in plane["secrets"][key]} for key in planes[-1]["secrets"]}
    if not seen["clientSecret"] or not seen["primaryKey"]:
        pytest.skip("no test of this session published credentials and scoring keys to audit")
    secrets = {value for found in seen.values() for value in found if len(value) >= 8}

    logs = sorted(parallel.session_dir(tmp_path_factory).rglob("*.log"))
    assert any(p.name.endswith("operator.log") for p in logs), "the operators' logs were not found"
    places = {str(p): p.read_text(errors="replace") for p in logs}
    for n, plane in enumerate(planes):
        places[f"events of control plane {n}"] = plane["events"]
        places[f"gpumodeldeployments of control plane {n}"] = plane["gpumodeldeployments"]
    assert any(json.loads(plane["events"])["items"] for plane in planes), "no events to audit"

    leaks = sorted({(where, value[:4] + "...") for where, text in places.items() for value in secrets if value in text})
    assert not leaks, f"secret values found in: {leaks}"
    print(f"audited {len(secrets)} secret values in {len(logs)} log files, the events and the statuses")
