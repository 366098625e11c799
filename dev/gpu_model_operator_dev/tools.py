"""The other tools the tests run, each built from its pinned Go module under ``hack/`` into the cache outside the
repository (once; later calls only find it), as the control plane, helm and the Argo CD engine are: the real
library or program, never an imitation of it."""

from __future__ import annotations

from pathlib import Path

from .controlplane import run_build


def build(tool: str) -> Path:
    """Runs ``hack/<tool>/build.sh`` and returns the directory it prints last (where the binaries are); one build of
    a tool at a time (``controlplane.run_build``)."""
    return Path(run_build(tool))


def ensure_kstatus() -> Path:
    """``hack/kstatus/``'s program: kstatus (sigs.k8s.io/cli-utils), what Flux and kpt compute a status with."""
    return build("kstatus") / "kstatus"


def ensure_prometheus() -> Path:
    """The directory with ``promtool`` and ``prometheus`` of the Prometheus release pinned in ``hack/prometheus/``:
    the rule unit tests (``promtool test rules``) and a real scrape."""
    return build("prometheus")


def ensure_image() -> str:
    """The operator's image, built by ``hack/image/build.sh`` (``make image``: buildah on a Debian base made with
    debootstrap, cached); returns its name in buildah's storage."""
    return run_build("image")
