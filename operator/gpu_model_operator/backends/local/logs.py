"""Reading the inference server's logs: why a replica died, in words that point at the user's script."""

from __future__ import annotations

import re
from pathlib import Path


def failure_message(text: str, entry_script: str = "") -> str | None:
    """The exception a replica died of, as the inference server logged it: the one raised through the
    entry script (the server logs others, and wraps the user's in its own), with where in the script it
    was raised. None when the log has no traceback."""
    found: list[tuple[str, str]] = []  # (exception, the entry script's last frame or "")
    where, in_traceback = "", False
    for line in text.splitlines():
        if "Traceback (most recent call last):" in line:
            where, in_traceback = "", True
        elif in_traceback and line.startswith("  File "):
            path = re.match(r'\s*File "([^"]+)"', line)
            if path and entry_script and path.group(1) == entry_script:
                where = line.strip().replace(path.group(1), Path(entry_script).name).replace('"', "")
        elif in_traceback and line.strip() and not line.startswith(" "):
            found.append((line.strip(), where))
            in_traceback = False
    if not found:
        return None
    through_script = [f for f in found if f[1]]
    not_wrappers = [f for f in found if not f[0].startswith("azureml_inference_server")]
    exc, where = (through_script[:1] or not_wrappers[-1:] or found[-1:])[0]
    stage = "importing the entry script" if "Failed to import user script" in text else "init()"
    return f"{stage} failed: {exc}" + (f" ({where})" if where else "")


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def log_tail(path: str, lines: int = 3) -> str:
    text = read(path)
    boring = ("Worker exiting", "Shutting down", "Reason:", "Handling signal")
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not any(b in ln for b in boring)]
    return " | ".join(kept[-lines:])
