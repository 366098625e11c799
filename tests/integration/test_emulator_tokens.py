"""The emulator's token rules, case by case: what ARM answers to a bearer token, and what Entra ID answers to a
federated ``client_assertion``. The SDK tests reach only the happy path and one refusal of each; these tables
pin every refusal's code and words, so a change of JWT library cannot change what a client sees.

Pure functions, no server: the tokens are built here with PyJWT, as a kube-apiserver or a forger would.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gpu_model_operator_dev.azureml_emulator.auth import mint_token, verify_token
from gpu_model_operator_dev.azureml_emulator.v2.identity import AssertionRejected, verify_assertion
from gpu_model_operator_dev.azureml_emulator.v2.model import FederatedCredential

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
#: The parameters below are built when the tests are collected, which may be many minutes before they run in a
#: whole suite: what must still be live, or still early, then is a day away; what is expired stays expired.
NOW = int(time.time())
DAY = 86400
LIVE = {"aud": "https://management.core.windows.net/", "tid": "t", "iat": NOW, "nbf": NOW, "exp": NOW + DAY}
INVALID = ("InvalidAuthenticationToken", "The access token is invalid.")
BAD_SIGNATURE = ("InvalidAuthenticationToken", "The access token has an invalid signature.")
EXPIRED = ("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        pytest.param(mint_token(KEY, LIVE), None, id="live"),
        pytest.param(mint_token(KEY, {**LIVE, "exp": NOW - 1}), EXPIRED, id="expired"),
        pytest.param(mint_token(KEY, {k: v for k, v in LIVE.items() if k != "exp"}), EXPIRED, id="no-expiry"),
        pytest.param(mint_token(OTHER_KEY, LIVE), BAD_SIGNATURE, id="another-key"),
        pytest.param(mint_token(OTHER_KEY, {**LIVE, "exp": NOW - 1}), BAD_SIGNATURE, id="signature-before-expiry"),
        pytest.param(mint_token(KEY, LIVE)[:-4] + "AAAA", BAD_SIGNATURE, id="tampered-signature"),
        pytest.param(jwt.encode(LIVE, RSA_KEY, algorithm="RS256"), BAD_SIGNATURE, id="another-algorithm"),
        pytest.param("a.b.c", INVALID, id="garbage"),
        pytest.param("abc.def", INVALID, id="two-segments"),
        pytest.param("", INVALID, id="empty"),
    ],
)
def test_bearer_tokens_are_answered_as_arm_does(token: str, problem: tuple[str, str] | None) -> None:
    assert verify_token(KEY, token) == problem


def test_a_minted_token_carries_its_claims() -> None:
    """The SDKs decode ``exp`` and ``tid`` from the token themselves, unverified."""
    token = mint_token(KEY, LIVE)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, options={"verify_signature": False}) == LIVE


ISSUER = "https://kubernetes.default.svc.cluster.local"
SUBJECT = "system:serviceaccount:gpu:gpu-model-operator"
EXCHANGE = "api://AzureADTokenExchange"


def _jwks() -> dict[str, Any]:
    rsa_jwk = {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "sa-key-1", "use": "sig"}
    ec_jwk = {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec-key-1", "use": "sig"}
    return {"keys": [{**rsa_jwk, "alg": "RS256"}, ec_jwk]}


CREDENTIAL = FederatedCredential(client_id="app", issuer=ISSUER, subject=SUBJECT, jwks=_jwks())


def _assertion(key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "sa-key-1", **claims: Any) -> str:
    """A projected service-account token as a kube-apiserver signs it, with ``claims`` overriding."""
    body = {"iss": ISSUER, "sub": SUBJECT, "aud": [EXCHANGE], "iat": NOW, "nbf": NOW, "exp": NOW + DAY, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.mark.parametrize(
    ("client_id", "assertion"),
    [
        pytest.param("app", _assertion(), id="rs256"),
        pytest.param("app", _assertion(alg="RS384"), id="rs384-on-an-rs256-jwk"),
        pytest.param("app", _assertion(EC_KEY, "ES256", "ec-key-1"), id="es256"),
        pytest.param("app", _assertion(kid=None), id="no-kid-tries-every-key"),
        pytest.param("app", _assertion(aud=EXCHANGE), id="audience-as-a-string"),
    ],
)
def test_federated_assertions_entra_accepts(client_id: str, assertion: str) -> None:
    assert verify_assertion([CREDENTIAL], client_id, assertion) is CREDENTIAL


def test_a_clock_skew_under_5_minutes_is_accepted() -> None:
    """Built when it runs: a token valid from two minutes from now passes Entra's five minutes of skew."""
    assert verify_assertion([CREDENTIAL], "app", _assertion(nbf=int(time.time()) + 120)) is CREDENTIAL


@pytest.mark.parametrize(
    ("client_id", "assertion", "status", "error", "code", "words"),
    [
        pytest.param("nobody", _assertion(), 400, "unauthorized_client", 700016, "'nobody' was not found", id="app"),
        pytest.param("app", "not-a-jwt", 400, "invalid_request", 50027, "Token format not valid", id="format"),
        pytest.param("app", "a.b.c", 400, "invalid_request", 50027, "Token format not valid", id="garbage"),
        pytest.param(
            "app", _assertion(aud=["api://other"]), 400, "invalid_request", 70021, "Audience: 'api://other'", id="aud"
        ),
        pytest.param(
            "app", _assertion(iss="https://evil"), 400, "invalid_request", 70021, "Issuer: 'https://evil'", id="iss"
        ),
        pytest.param("app", _assertion(sub="system:x"), 400, "invalid_request", 70021, "Subject: 'system:x'", id="sub"),
        pytest.param("app", _assertion(exp=NOW - 1), 400, "invalid_client", 700024, "valid time range", id="expired"),
        pytest.param("app", _assertion(nbf=NOW + DAY), 400, "invalid_client", 700024, "valid time range", id="early"),
        pytest.param(
            "app",
            _assertion(rsa.generate_private_key(public_exponent=65537, key_size=2048), exp=NOW - 1),
            400,
            "invalid_client",
            700024,
            "valid time range",
            id="time-before-signature",
        ),
        pytest.param(
            "app",
            _assertion(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            401,
            "invalid_client",
            700027,
            "invalid signature",
            id="another-key",
        ),
        pytest.param("app", _assertion(kid="gone"), 401, "invalid_client", 700027, "invalid signature", id="kid"),
        pytest.param(
            "app", _assertion(EC_KEY, "ES256", "sa-key-1"), 401, "invalid_client", 700027, "invalid signature", id="kty"
        ),
        pytest.param(
            "app", _assertion(b"s" * 32, "HS256"), 401, "invalid_client", 700027, "invalid signature", id="hs256"
        ),
        pytest.param(
            "app", _assertion(None, "none"), 401, "invalid_client", 700027, "invalid signature", id="alg-none"
        ),
    ],
)
def test_federated_assertions_entra_refuses(
    client_id: str, assertion: str, status: int, error: str, code: int, words: str
) -> None:
    with pytest.raises(AssertionRejected) as refused:
        verify_assertion([CREDENTIAL], client_id, assertion)
    assert (refused.value.status, refused.value.error, refused.value.code) == (status, error, code)
    assert words in refused.value.description
    body = refused.value.body()
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"] == f"AADSTS{code}: {refused.value.description}"
