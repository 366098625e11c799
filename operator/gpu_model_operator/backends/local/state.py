"""The local backend's record of each service: typed, written atomically, readable by the operator's user only.

One ``state.json`` per service directory is the whole truth about it (the processes it runs, the GPUs they
hold, its port and keys), so a restarted operator re-adopts what runs instead of starting duplicates, and
deletion finds every process. Beside it, ``access.json`` is the part the replicas read on each request (the
service's name, whether auth is on, the keys): re-read whenever it changes, so a key change or a rename
reaches running replicas without a restart.

Files written by an earlier operator, which put a router process in front of the replicas, are read too:
their router's port becomes the service's port (the scoring URI does not change) and ``layout`` says that
the router and its replicas are to be replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Replicas listen on the service's port themselves (SO_REUSEPORT) and check the keys in-process. Files
#: without ``layout`` are of the earlier one (1): a router process in front of replicas on their own ports.
LAYOUT = 2
ACCESS_FILE = "access.json"
STATE_FILE = "state.json"


class ProcessRecord(BaseModel):
    """A detached process we started, known by pid, process group and creation time: a recycled pid has
    another creation time, so it is never mistaken for ours."""

    model_config = ConfigDict(extra="ignore")

    pid: int = 0
    pgid: int | None = None
    #: Seconds since the epoch, as psutil reports it.
    create_time: float | None = None
    started_at: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_clock_ticks(cls, data: Any) -> Any:
        """Earlier files kept the start as clock ticks since boot (``start_time``, from /proc/<pid>/stat)."""
        if isinstance(data, dict) and data.get("create_time") is None and data.get("start_time"):
            with contextlib.suppress(ValueError, OSError):
                ticks = int(data["start_time"])
                data = {**data, "create_time": ticks / os.sysconf("SC_CLK_TCK") + psutil.boot_time()}
        return data


class ReplicaRecord(ProcessRecord):
    """One ``azmlinfsrv`` replica: its gunicorn master, the GPUs it is pinned to, its own loopback port (for
    the operator's per-replica health check) and its log."""

    index: int
    port: int
    gpus: list[int] = Field(default_factory=list)
    log: str


class Keys(BaseModel):
    primary: str
    secondary: str


class ServiceRecord(BaseModel):
    """What the operator knows of one local service; ``state.json``."""

    model_config = ConfigDict(extra="ignore")

    layout: int = 1
    #: "namespace/name" of the GpuModelDeployment.
    owner: str
    service: str = ""
    fingerprint: str | None = None
    keys: Keys
    #: The scoring port on 127.0.0.1 that every replica of the service listens on (SO_REUSEPORT).
    port: int
    replicas: list[ReplicaRecord] = Field(default_factory=list)
    #: An earlier operator's router, still to be stopped (its port is ``port``).
    legacy_router: ProcessRecord | None = None
    env_hash: str = ""
    conda: str = ""
    model_dir: str = ""
    entry_script: str = ""
    gpu_cores: int = 1
    auth_enabled: bool = True
    timeout_ms: int = 60000
    cpu_fallback: bool = False
    desired_replicas: int = 0
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_router_layout(cls, data: Any) -> Any:
        """The earlier layout: ``router`` with the service's port; the replicas behind it are to be replaced."""
        if isinstance(data, dict) and "router" in data and "port" not in data:
            router = dict(data["router"] or {})
            data = {k: v for k, v in data.items() if k != "router"}
            data.update(port=router.get("port", 0), legacy_router=router if router.get("pid") else None)
        return data

    @property
    def legacy(self) -> bool:
        """Started by an earlier operator (behind a router): to be stopped and started again as replicas that
        serve the port themselves."""
        return self.layout < LAYOUT or self.legacy_router is not None

    def access(self) -> dict[str, Any]:
        """What a replica needs to answer a request: the route's name, whether a key is needed, the keys."""
        keys = [self.keys.primary, self.keys.secondary] if self.auth_enabled else []
        return {"service": self.service, "auth_enabled": self.auth_enabled, "keys": keys}

    def dump(self) -> str:
        return self.model_dump_json(indent=2)


def write_private(path: Path, text: str) -> None:
    """Atomically (a crash never leaves half a file, a reader never sees one), readable by this user only:
    the state and access files hold the scoring keys."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode applies to a new file only
    tmp.replace(path)


def private_dir(path: Path) -> None:
    """A directory only this user can enter: the services' directories hold their keys."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def read(service_dir: Path) -> ServiceRecord | None:
    """The record in ``service_dir``; None when there is none. Raises OSError or ValueError when it cannot be
    read or is not a record."""
    try:
        text = (service_dir / STATE_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        return ServiceRecord.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{service_dir / STATE_FILE} is not a service record: {exc}") from exc


def save(service_dir: Path, record: ServiceRecord) -> None:
    """The access file first: a replica started from this record finds it complete."""
    write_private(service_dir / ACCESS_FILE, json.dumps(record.access()))
    write_private(service_dir / STATE_FILE, record.dump())


def read_all(services_dir: Path) -> list[tuple[Path, ServiceRecord]]:
    """Every record that can be read, with its directory; one that cannot is skipped (it is reported where
    its own service is observed)."""
    found = []
    for path in sorted(services_dir.glob(f"*/{STATE_FILE}")):
        with contextlib.suppress(OSError, ValueError):
            record = read(path.parent)
            if record is not None:
                found.append((path.parent, record))
    return found
