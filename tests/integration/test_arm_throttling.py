"""ARM's throttling in the Azure ML emulator, over HTTPS as a client sees it: buckets drain and refill, the
remaining-requests headers count down, Retry-After is honest, and principals and subscriptions have buckets of
their own. Small buckets keep it fast; the sizes ARM publishes are the default, checked as configuration.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorClient, start_emulator
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SUB, SUB2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
WS = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
WS2 = f"/subscriptions/{SUB2}/resourceGroups/rg2/providers/Microsoft.MachineLearningServices/workspaces/ws2"
MMS = "/modelmanagement/v1.0" + WS
PUBLISHED = {
    "reads": {"size": 250.0, "refill_per_s": 25.0},
    "writes": {"size": 200.0, "refill_per_s": 10.0},
    "deletes": {"size": 200.0, "refill_per_s": 10.0},
}
#: Slow enough that no token comes back while a test makes its calls.
STILL = 0.01


@dataclass
class Arm:
    """A client of the emulator's ARM surface with a token per service principal (its ``oid`` names it)."""

    emu: Emulator
    session: requests.Session

    def token(self, client_id: str) -> str:
        answer = self.session.post(
            f"{self.emu.base_url}/adfs/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "s"},
            timeout=10,
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def call(self, method: str, path: str, principal: str = "alice", body: Any = None) -> requests.Response:
        """ARM's requests carry the api-version the SDKs send for the resource type (ARM refuses one without)."""
        headers = {"Authorization": f"Bearer {self.token(principal)}"}
        params = {"api-version": api_version(path)} if path.startswith("/subscriptions") else {}
        url = self.emu.base_url + path
        return self.session.request(method, url, headers=headers, params=params, json=body, timeout=10)


def api_version(path: str) -> str:
    """The api-version azure-ai-ml and azureml-core send for the resource type of ``path``."""
    if "/onlineEndpoints" in path:
        return "2023-04-01-preview"
    if "/computes" in path:
        return "2023-08-01-preview"
    return "2022-05-01" if "/workspaces/" in path else "2020-01-01"


def limits(reads: float = 250, writes: float = 200, deletes: float = 200, refill: float = STILL) -> dict[str, Any]:
    return {
        k: {"size": v, "refill_per_s": refill} for k, v in (("reads", reads), ("writes", writes), ("deletes", deletes))
    }


def ratelimit(answer: requests.Response) -> dict[str, str]:
    """The throttling headers of an answer: the remaining requests and, on a 429, Retry-After."""
    return {k.lower(): v for k, v in answer.headers.items() if "ratelimit" in k.lower() or k.lower() == "retry-after"}


def oid(client_id: str) -> str:
    """The object id the emulator's tokens carry for a service principal."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, client_id))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with start_emulator(tmp_path_factory.mktemp("emulator")) as emu:
        emu.seed(workspaces=[{"subscription_id": SUB2, "resource_group": "rg2", "name": "ws2"}])
        yield emu


@pytest.fixture
def arm(emulator: Emulator) -> Iterator[Arm]:
    """Throttling off and counts zeroed before each test, as a fresh emulator has it."""
    emulator.configure_throttling(enabled=False, limits="published", global_factor=15, region="")
    emulator.clear_throttling_calls()
    session = requests.Session()
    session.trust_env = False  # no proxy: the emulator is on loopback
    session.verify = str(emulator.ca_file)
    yield Arm(emulator, session)
    session.close()
    emulator.configure_throttling(enabled=False, limits="published", global_factor=15, region="")


def test_off_by_default_with_arms_published_limits(tmp_path: Path) -> None:
    with start_emulator(tmp_path) as emu:
        session = requests.Session()
        session.trust_env, session.verify = False, str(emu.ca_file)
        answer = Arm(emu, session).call("GET", WS)
        assert (answer.status_code, ratelimit(answer)) == (200, {})
        assert emu.throttling()["config"] == {
            "enabled": False,
            "limits": PUBLISHED,
            "global_factor": 15.0,
            "region": "",
        }


@dataclass(frozen=True)
class KindCase:
    method: str
    path: str
    #: The headers of the first two answers: each counts down its own kind's bucket and no other.
    want: list[tuple[int, dict[str, str]]]
    body: Any = None


#: An endpoint body as the SDK sends it.
ENDPOINT = {"location": "eastus", "properties": {"authMode": "Key"}}


def _countdown(scope: str, kind: str, status: int, own: int, shared: int | None) -> list[tuple[int, dict[str, str]]]:
    def headers(used: int) -> dict[str, str]:
        out = {f"x-ms-ratelimit-remaining-{scope}-{kind}": str(own - used)}
        if shared is not None:
            out[f"x-ms-ratelimit-remaining-{scope}-global-{kind}"] = str(shared - used)
        return out

    return [(status, headers(1)), (status, headers(2))]


KIND_CASES: dict[str, KindCase] = {
    "a read takes a read token": KindCase("GET", WS, _countdown("subscription", "reads", 200, 5, 75)),
    "a resource provider's 404 is an answer too": KindCase(
        "GET", WS.replace("ws1", "nope"), _countdown("subscription", "reads", 404, 5, 75)
    ),
    "a POST action (listKeys) takes a write token": KindCase(
        "POST", WS + "/onlineEndpoints/missing/listKeys", _countdown("subscription", "writes", 404, 4, 60)
    ),
    "a PUT takes a write token (one Azure refuses: a name of two characters)": KindCase(
        "PUT", WS + "/onlineEndpoints/ab", _countdown("subscription", "writes", 400, 4, 60), ENDPOINT
    ),
    "a DELETE takes a delete token": KindCase(
        "DELETE", WS + "/computes/missing", _countdown("subscription", "deletes", 404, 3, 45)
    ),
    "listing subscriptions takes the tenant's read token": KindCase(
        "GET", "/subscriptions", _countdown("tenant", "reads", 200, 5, None)
    ),
}


@pytest.mark.parametrize("name", KIND_CASES)
def test_each_kind_counts_down_its_own_bucket(arm: Arm, name: str) -> None:
    case = KIND_CASES[name]
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=5, writes=4, deletes=3))
    answers = [arm.call(case.method, case.path, body=case.body) for _ in range(2)]
    assert [(a.status_code, ratelimit(a)) for a in answers] == case.want


def test_an_empty_bucket_answers_429_and_takes_no_token(arm: Arm) -> None:
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=3))
    answers = [arm.call("GET", WS) for _ in range(5)]
    retry_after = [a.headers.get("Retry-After") for a in answers]
    seen = [(a.status_code, {k: v for k, v in ratelimit(a).items() if k != "retry-after"}) for a in answers]
    own, shared = "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-global-reads"
    assert seen == [
        (200, {own: "2", shared: "44"}),
        (200, {own: "1", shared: "43"}),
        (200, {own: "0", shared: "42"}),
        (429, {own: "0", shared: "42"}),  # refused: the global bucket kept its token
        (429, {own: "0", shared: "42"}),
    ]
    assert retry_after[:3] == [None, None, None]
    # One token at 0.01 a second: 100 s, less what came back while the test ran.
    assert all(90 <= int(r or 0) <= math.ceil(1 / STILL) for r in retry_after[3:]), retry_after
    assert answers[3].json() == {
        "error": {
            "code": "SubscriptionRequestsThrottled",
            "message": f"Number of 'read' requests for subscription '{SUB}' actor '{oid('alice')}' exceeded. "
            f"Please try again after '{retry_after[3]}' seconds.",
        }
    }


def test_retry_after_is_honest(arm: Arm) -> None:
    """The client does what a 429 tells it: waits Retry-After (the sleeps are that wait, the behaviour under test).
    A token every 4 s: the first 429 says up to 4 (less what came back while the calls went), a second one a second
    later says less, and waiting what it says is enough."""
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=1, refill=0.25))
    assert arm.call("GET", WS).status_code == 200
    first = arm.call("GET", WS)
    time.sleep(1)
    second = arm.call("GET", WS)
    assert (first.status_code, second.status_code) == (429, 429)
    first_wait, second_wait = int(first.headers["Retry-After"]), int(second.headers["Retry-After"])
    assert 3 <= first_wait <= 4 and 1 <= second_wait < first_wait, (first_wait, second_wait)
    time.sleep(second_wait)
    assert arm.call("GET", WS).status_code == 200


def test_buckets_refill_up_to_their_size_and_no_further(arm: Arm) -> None:
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=2, refill=4))
    drained = [arm.call("GET", WS).status_code for _ in range(3)]

    def own_reads() -> float:
        buckets = arm.emu.throttling()["buckets"]
        return float(next(b["tokens"] for b in buckets if b["principal"] == oid("alice") and b["kind"] == "reads"))

    wait_for("alice's read bucket to refill", lambda: own_reads() == 2.0, timeout=10, every=0.2)
    after = arm.call("GET", WS)
    assert (drained, after.status_code, after.headers["x-ms-ratelimit-remaining-subscription-reads"]) == (
        [200, 200, 429],
        200,
        "1",
    )


def test_each_principal_has_buckets_of_its_own(arm: Arm) -> None:
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=2))
    calls = [("alice", WS)] * 3 + [("bob", WS)]
    answers = [arm.call("GET", path, principal) for principal, path in calls]
    own, shared = "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-global-reads"
    assert [(a.status_code, ratelimit(a).get(own), ratelimit(a).get(shared)) for a in answers] == [
        (200, "1", "29"),
        (200, "0", "28"),
        (429, "0", "28"),
        (200, "1", "27"),  # bob's own bucket is full; the global one counts both
    ]


def test_each_subscription_has_buckets_of_its_own(arm: Arm) -> None:
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=2))
    answers = [arm.call("GET", path) for path in (WS, WS, WS, WS2)]
    own, shared = "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-global-reads"
    assert [(a.status_code, ratelimit(a).get(own), ratelimit(a).get(shared)) for a in answers] == [
        (200, "1", "29"),
        (200, "0", "28"),
        (429, "0", "28"),
        (200, "1", "29"),
    ]


def test_the_global_bucket_spans_principals(arm: Arm) -> None:
    """Global 1.5 times a principal's bucket of 2: three reads in the subscription, whoever makes them."""
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=2), global_factor=1.5)
    answers = [arm.call("GET", WS, principal) for principal in ("alice", "alice", "bob", "bob")]
    own, shared = "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-global-reads"
    assert [(a.status_code, ratelimit(a).get(own), ratelimit(a).get(shared)) for a in answers] == [
        (200, "1", "2"),
        (200, "0", "1"),
        (200, "1", "0"),
        (429, "1", "0"),  # bob still has a token of his own; the subscription has none
    ]


def test_only_arm_is_throttled(arm: Arm) -> None:
    """Past an empty read bucket, the v1 services on the workspace's regional host and scoring still answer,
    without ARM's headers."""
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=1))
    paths = [WS, WS, MMS + "/services", "/rp/workspaces" + WS + "/computes", "/api/v1/service/none/"]
    answers = [arm.call("GET", path) for path in paths]
    arm_headers = ["x-ms-ratelimit-remaining-subscription-global-reads", "x-ms-ratelimit-remaining-subscription-reads"]
    assert [(a.status_code, sorted(ratelimit(a))) for a in answers] == [
        (200, arm_headers),
        (429, ["retry-after", *arm_headers]),
        (200, []),
        (200, []),
        (404, []),
    ]


def test_calls_are_counted_by_surface_and_kind(arm: Arm) -> None:
    arm.emu.configure_throttling(enabled=True, limits=limits(reads=1))
    for method, path in [
        ("GET", WS),
        ("GET", WS),
        ("POST", WS + "/onlineEndpoints/missing/listKeys"),
        ("DELETE", WS + "/computes/missing"),
        ("GET", MMS + "/services"),
        ("POST", MMS + "/services/missing/listkeys"),
        ("GET", "/api/v1/service/none/"),
    ]:
        arm.call(method, path)
    rows = sorted(arm.emu.throttling()["calls"], key=lambda r: (r["surface"], r["kind"]))
    assert rows == [
        {"surface": "arm", "kind": "delete", "bucket": "deletes", "calls": 1, "throttled": 0},
        {"surface": "arm", "kind": "keys", "bucket": "writes", "calls": 1, "throttled": 0},
        {"surface": "arm", "kind": "read", "bucket": "reads", "calls": 2, "throttled": 1},
        {"surface": "auth", "kind": "auth", "bucket": None, "calls": 7, "throttled": 0},  # a token per call
        {"surface": "scoring", "kind": "probe", "bucket": None, "calls": 1, "throttled": 0},
        {"surface": "workspace", "kind": "keys", "bucket": None, "calls": 1, "throttled": 0},
        {"surface": "workspace", "kind": "read", "bucket": None, "calls": 1, "throttled": 0},
    ]


def test_reset_refills_the_buckets_and_keeps_the_settings(arm: Arm) -> None:
    settings = arm.emu.configure_throttling(enabled=True, limits=limits(reads=1))["config"]
    drained = [arm.call("GET", WS).status_code for _ in range(2)]
    arm.emu.reset()
    after = arm.call("GET", WS)
    state = arm.emu.throttling()
    arm_rows = [r for r in state["calls"] if r["surface"] == "arm"]
    assert (drained, after.status_code, state["config"], arm_rows) == (
        [200, 429],
        200,
        settings,
        [{"surface": "arm", "kind": "read", "bucket": "reads", "calls": 1, "throttled": 0}],
    )


@dataclass(frozen=True)
class BadSetting:
    #: The settings sent to the emulator's throttling endpoint.
    body: dict[str, Any]


BAD_SETTINGS: dict[str, BadSetting] = {
    "an unknown bucket": BadSetting({"limits": {"lists": {"size": 1, "refill_per_s": 1}}}),
    "a bucket that never refills": BadSetting({"limits": {"reads": {"size": 5, "refill_per_s": 0}}}),
    "a global bucket smaller than a principal's": BadSetting({"global_factor": 0.5}),
    "an unknown setting": BadSetting({"burst": 3}),
    "enabled that is not a boolean": BadSetting({"enabled": "yes"}),
}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_bad_settings_are_refused_and_change_nothing(arm: Arm, name: str) -> None:
    before = arm.emu.throttling()["config"]
    with pytest.raises(RuntimeError, match="HTTP 400"):
        arm.emu.configure_throttling(**BAD_SETTINGS[name].body)
    assert arm.emu.throttling()["config"] == before


def test_the_command_line_turns_it_on(tmp_path: Path) -> None:
    args = ["--arm-throttling", "--arm-limit", "reads=7/2", "--arm-global-factor", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_model_operator_dev.azureml_emulator", "--state-dir", str(tmp_path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        config = EmulatorClient(info["base_url"], Path(info["ca_bundle"])).throttling()["config"]
        assert config == {
            "enabled": True,
            "limits": {**PUBLISHED, "reads": {"size": 7.0, "refill_per_s": 2.0}},
            "global_factor": 3.0,
            "region": "",
        }
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
