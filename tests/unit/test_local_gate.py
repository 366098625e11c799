"""The replicas' key check and routes (``gate.KeyGate``, a WSGI middleware), the state record read from the files
of today and of the earlier router layout, and the rule that the gate runs where the operator's package is not
installed: standard library only."""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.local import gate, state
from gpu_model_operator.backends.local.state import LAYOUT, ServiceRecord

KEYS = ["primary-key", "secondary-key"]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Stands for the inference server's Flask app: says what it was asked."""
    start_response("200 OK", [("Content-Type", "application/json")])
    seen = {"path": environ["PATH_INFO"], "authorization": environ.get("HTTP_AUTHORIZATION")}
    return [json.dumps(seen).encode()]


def call(wrapped: gate.KeyGate, path: str, key: str | None = None) -> tuple[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "POST"}
    if key is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    status: list[str] = []
    body = b"".join(wrapped(environ, lambda s, headers: status.append(s)))
    return status[0], json.loads(body)


@pytest.fixture
def access_file(tmp_path: Path) -> Path:
    path = tmp_path / "access.json"
    path.write_text(json.dumps({"service": "digits-svc", "auth_enabled": True, "keys": KEYS}))
    return path


SCORE, ROOT = "/api/v1/service/digits-svc/score", "/api/v1/service/digits-svc/"
NO_KEY = "missing or invalid key: send 'Authorization: Bearer <primary or secondary key>'"


def served(path: str) -> tuple[str, Any]:
    """Forwarded to the app as ``path``; the user's code never sees the key."""
    return "200 OK", {"path": path, "authorization": None}


def refused() -> tuple[str, Any]:
    return "401 Unauthorized", {"message": NO_KEY}


def no_route(path: str) -> tuple[str, Any]:
    return "404 Not Found", {"message": f"no route '{path}' here"}


@dataclass(frozen=True)
class Route:
    path: str
    key: str | None
    #: The status and the body the caller gets.
    want: tuple[str, Any]


ROUTES: dict[str, Route] = {
    "the primary key scores": Route(SCORE, "primary-key", served("/score")),
    "the secondary key scores": Route(SCORE, "secondary-key", served("/score")),
    "the service's root": Route(ROOT, "primary-key", served("/")),
    "the service's root without the slash": Route(ROOT.rstrip("/"), "primary-key", served("/")),
    "no key": Route(SCORE, None, refused()),
    "a wrong key": Route(SCORE, "wrong", refused()),
    "a key with a trailing space": Route(SCORE, "primary-key ", served("/score")),
    "the service's root without a key": Route(ROOT, None, refused()),
    "another service": Route(
        "/api/v1/service/other-svc/score", "primary-key", no_route("/api/v1/service/other-svc/score")
    ),
    "the server's own route": Route("/score", "primary-key", no_route("/score")),
    "the server's root": Route("/", None, no_route("/")),
    "the server's swagger document": Route(
        f"{ROOT}swagger.json", "primary-key", no_route("/api/v1/service/digits-svc/swagger.json")
    ),
}


@pytest.mark.parametrize("name", ROUTES)
def test_routes_and_keys(name: str, access_file: Path) -> None:
    case = ROUTES[name]
    assert call(gate.KeyGate(app, str(access_file)), case.path, case.key) == case.want


def test_a_bearer_scheme_in_any_case_and_nothing_else() -> None:
    assert gate.authorized("bearer primary-key", KEYS) and gate.authorized("BEARER secondary-key", KEYS)
    assert not gate.authorized("Basic primary-key", KEYS)
    assert not gate.authorized("Bearer ", KEYS) and not gate.authorized("Bearer x", [])


def test_changes_to_the_access_file_are_taken_at_the_next_request(access_file: Path) -> None:
    wrapped = gate.KeyGate(app, str(access_file))
    assert call(wrapped, "/api/v1/service/digits-svc/score", "primary-key")[0] == "200 OK"
    state.write_private(access_file, json.dumps({"service": "renamed", "auth_enabled": True, "keys": ["new"]}))
    assert call(wrapped, "/api/v1/service/digits-svc/score", "new")[0] == "404 Not Found"
    assert call(wrapped, "/api/v1/service/renamed/score", "primary-key")[0] == "401 Unauthorized"
    assert call(wrapped, "/api/v1/service/renamed/score", "new")[0] == "200 OK"
    state.write_private(access_file, json.dumps({"service": "renamed", "auth_enabled": False, "keys": []}))
    assert call(wrapped, "/api/v1/service/renamed/score")[0] == "200 OK"
    access_file.unlink()  # gone (the service is being deleted): the last good one holds
    assert call(wrapped, "/api/v1/service/renamed/score")[0] == "200 OK"


def test_no_access_file_is_no_access(tmp_path: Path) -> None:
    status, _ = call(gate.KeyGate(app, str(tmp_path / "missing.json")), "/api/v1/service/x/score", "k")
    assert status == "503 Service Unavailable"


def test_the_gate_needs_nothing_outside_the_standard_library() -> None:
    """It runs in the serving environment, where the operator's package is not installed."""
    tree = ast.parse(Path(gate.__file__).read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), "no relative imports"
    assert modules - {"__future__"} <= set(sys.stdlib_module_names)


def test_a_record_of_the_router_layout_keeps_its_port_and_asks_to_be_moved(tmp_path: Path) -> None:
    """The fields an earlier operator wrote: the router's port becomes the service's (the URI stays), the router
    is kept to be stopped, start times in clock ticks become creation times."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    earlier = {
        "owner": "team-a/echo",
        "keys": {"primary": "p", "secondary": "s"},
        "replicas": [
            {"index": 0, "pid": os.getpid(), "pgid": os.getpgid(0), "start_time": str(ticks),
             "started_at": "2026-11-30T10:00:00Z", "port": 41000, "gpus": [1], "log": "/x/replica-0.log"},
        ],
        "router": {"pid": 4242, "pgid": 4242, "start_time": "123", "started_at": "", "port": 41235},
        "fingerprint": "abc", "service": "echo-svc", "env_hash": "e", "conda": "c", "model_dir": "/m",
        "entry_script": "/x/app/score.py", "gpu_cores": 1, "auth_enabled": True, "timeout_ms": 60000,
        "cpu_fallback": False, "desired_replicas": 1, "warnings": [],
    }  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(earlier))
    record = state.read(tmp_path)
    assert record is not None and record.legacy and record.layout == 1
    assert record.port == 41235 and record.legacy_router is not None and record.legacy_router.pid == 4242
    assert record.replicas[0].gpus == [1] and record.replicas[0].port == 41000
    import psutil

    created = record.replicas[0].create_time
    assert created is not None and abs(created - psutil.Process().create_time()) < 1.5

    state.save(tmp_path, record.model_copy(update={"legacy_router": None, "layout": LAYOUT}))
    again = state.read(tmp_path)
    assert again is not None and not again.legacy and again.port == 41235
    assert json.loads((tmp_path / "access.json").read_text()) == {
        "service": "echo-svc", "auth_enabled": True, "keys": ["p", "s"]
    }  # fmt: skip
    for name in ("state.json", "access.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_a_record_without_auth_gives_the_replicas_no_keys() -> None:
    record = ServiceRecord(
        owner="a/b", service="s", keys=state.Keys(primary="p", secondary="s"), port=1, auth_enabled=False
    )
    assert record.access() == {"service": "s", "auth_enabled": False, "keys": []}


def test_a_file_that_is_not_a_record_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"owner": "a/b"}')
    with pytest.raises(ValueError, match="not a service record"):
        state.read(tmp_path)
    assert state.read(tmp_path / "missing") is None
