"""The control plane is the real thing: version, RBAC enforcement, TokenRequest for ServiceAccounts."""

from __future__ import annotations

import json

from gpu_model_operator_dev.controlplane import ControlPlane


def test_server_version_is_the_pinned_one(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"


def test_rbac_denies_an_unprivileged_service_account(control_plane: ControlPlane, namespace: str) -> None:
    who = f"--as=system:serviceaccount:{namespace}:nobody"
    result = control_plane.kubectl("auth", "can-i", "list", "secrets", "-n", namespace, who, check=False)
    assert result.stdout.strip() == "no"


def test_token_request_issues_a_jwt(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    token = control_plane.kubectl("create", "token", "robot", "-n", namespace).stdout.strip()
    assert token.count(".") == 2 and token.startswith("eyJ")
