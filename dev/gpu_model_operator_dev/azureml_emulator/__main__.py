"""Run the Azure ML emulator on its own: ``python -m gpu_model_operator_dev.azureml_emulator --port 0 --state-dir DIR``.

Prints one JSON line once it listens: ``base_url``, ``proxy_url``, ``ca_bundle``, ``state_dir``, ``admin``
(the admin API root), ``env`` (what a client process must set before importing azureml) and ``env_v2`` (the same
for azure-ai-ml and azure-identity clients), then serves until
SIGINT or SIGTERM. Why a JSON line: a parent process (a demo script, an end-to-end test) reads the chosen
ports and the environment without parsing logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

from .admin import apply_config
from .faults import FaultInjector
from .resources import EmulatorConfig
from .server import EmulatorServer
from .state import EmulatorState


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--{what} expects NAME=VALUE, got {item!r}")
        result[key] = value
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gpu_model_operator_dev.azureml_emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="HTTPS port (0: any free port)")
    p.add_argument("--proxy-port", type=int, default=0, help="CONNECT proxy port (0: any free port)")
    p.add_argument("--state-dir", type=Path, default=None, help="where certificates and SDK config go")
    defaults = EmulatorConfig()
    p.add_argument("--subscription-id", default=defaults.subscription_id)
    p.add_argument("--tenant-id", default=defaults.tenant_id)
    p.add_argument("--resource-group", default=defaults.resource_group)
    p.add_argument("--workspace", default=defaults.workspace_name)
    p.add_argument("--location", default=defaults.location)
    p.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="e.g. compute_create_s=5 service_create_s=2 (see Latencies)",
    )
    p.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="CLIENT_ID=SECRET",
        help="accept only these service principals (default: any)",
    )
    p.add_argument(
        "--validate-capacity",
        action="store_true",
        help="also refuse GPU over-subscription in /services/validate/resource",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for probabilistic faults")
    p.add_argument(
        "--arm-throttling",
        action="store_true",
        help="throttle ARM's calls with its token buckets (reads 250 at 25/s, writes and deletes 200 at 10/s)",
    )
    p.add_argument(
        "--arm-limit",
        action="append",
        default=[],
        metavar="KIND=SIZE/REFILL",
        help="a bucket's size and refill per second, e.g. reads=250/25 (kinds: reads, writes, deletes)",
    )
    p.add_argument("--arm-global-factor", type=float, default=None, help="the global bucket per principal's (15)")
    return p.parse_args(argv)


def throttling_settings(args: argparse.Namespace) -> dict[str, object]:
    """The ``POST /_emulator/throttling`` body the command line asks for."""
    limits: dict[str, dict[str, float]] = {}
    for kind, value in _pairs(args.arm_limit, "arm-limit").items():
        size, sep, refill = value.partition("/")
        if not sep:
            raise SystemExit(f"--arm-limit expects KIND=SIZE/REFILL, got {kind}={value}")
        limits[kind] = {"size": float(size), "refill_per_s": float(refill)}
    body: dict[str, object] = {"enabled": bool(args.arm_throttling), "limits": limits}
    if args.arm_global_factor is not None:
        body["global_factor"] = args.arm_global_factor
    return body


async def serve(args: argparse.Namespace, state_dir: Path) -> None:
    config = EmulatorConfig(
        subscription_id=args.subscription_id,
        tenant_id=args.tenant_id,
        resource_group=args.resource_group,
        workspace_name=args.workspace,
        location=args.location,
        validate_capacity=args.validate_capacity,
        credentials=_pairs(args.credential, "credential"),
    )
    state = EmulatorState(config, FaultInjector(args.seed))
    apply_config(state, {"latencies": {k: float(v) for k, v in _pairs(args.latency, "latency").items()}})
    try:
        state.throttling.configure(throttling_settings(args))
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"--arm-limit: {exc}") from exc
    server = EmulatorServer(state, state_dir, args.host, args.port, args.proxy_port)
    await server.start()
    assert server.certs is not None
    print(
        json.dumps(
            {
                "base_url": state.base_url,
                "proxy_url": f"http://{args.host}:{server.proxy_port}",
                "admin": f"{state.base_url}/_emulator",
                "ca_bundle": str(server.certs.ca_bundle),
                "state_dir": str(state_dir),
                "env": server.client_env(),
                "env_v2": server.client_env_v2(),
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(serve(args, args.state_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="azureml-emulator-") as tmp:
            asyncio.run(serve(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
