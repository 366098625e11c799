"""The emulator's token rules, case by case: what ARM answers to a bearer token, and what Entra ID answers to a
federated ``client_assertion``. The SDK tests reach only the happy path and one refusal of each; these tables
pin every refusal's code and words, so a change of JWT library cannot change what a client sees.

Pure functions, no server: the tokens are built here with PyJWT, as a kube-apiserver or a forger would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Token:
    token: str
    problem: tuple[str, str] | None


TOKENS: dict[str, Token] = {
    "live": Token(mint_token(KEY, LIVE), None),
    "expired": Token(mint_token(KEY, {**LIVE, "exp": NOW - 1}), EXPIRED),
    "no-expiry": Token(mint_token(KEY, {k: v for k, v in LIVE.items() if k != "exp"}), EXPIRED),
    "another-key": Token(mint_token(OTHER_KEY, LIVE), BAD_SIGNATURE),
    "signature-before-expiry": Token(mint_token(OTHER_KEY, {**LIVE, "exp": NOW - 1}), BAD_SIGNATURE),
    "tampered-signature": Token(mint_token(KEY, LIVE)[:-4] + "AAAA", BAD_SIGNATURE),
    "another-algorithm": Token(jwt.encode(LIVE, RSA_KEY, algorithm="RS256"), BAD_SIGNATURE),
    "garbage": Token("a.b.c", INVALID),
    "two-segments": Token("abc.def", INVALID),
    "empty": Token("", INVALID),
}


@pytest.mark.parametrize("name", TOKENS)
def test_bearer_tokens_are_answered_as_arm_does(name: str) -> None:
    case = TOKENS[name]
    assert verify_token(KEY, case.token) == case.problem


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


@dataclass(frozen=True)
class Accept:
    client_id: str
    assertion: str


ACCEPTS: dict[str, Accept] = {
    "rs256": Accept("app", _assertion()),
    "rs384-on-an-rs256-jwk": Accept("app", _assertion(alg="RS384")),
    "es256": Accept("app", _assertion(EC_KEY, "ES256", "ec-key-1")),
    "no-kid-tries-every-key": Accept("app", _assertion(kid=None)),
    "audience-as-a-string": Accept("app", _assertion(aud=EXCHANGE)),
}


@pytest.mark.parametrize("name", ACCEPTS)
def test_federated_assertions_entra_accepts(name: str) -> None:
    case = ACCEPTS[name]
    assert verify_assertion([CREDENTIAL], case.client_id, case.assertion) is CREDENTIAL


def test_a_clock_skew_under_5_minutes_is_accepted() -> None:
    """Built when it runs: a token valid from two minutes from now passes Entra's five minutes of skew."""
    assert verify_assertion([CREDENTIAL], "app", _assertion(nbf=int(time.time()) + 120)) is CREDENTIAL


@dataclass(frozen=True)
class Refusal:
    """Entra's refusal as a client reads it: HTTP status, OAuth error, AADSTS number, description."""

    status: int
    error: str
    code: int
    description: str


def not_found(client_id: str) -> Refusal:
    description = f"Application with identifier '{client_id}' was not found in the directory."
    return Refusal(400, "unauthorized_client", 700016, description)


NOT_A_JWT = Refusal(400, "invalid_request", 50027, "Invalid JWT token. Token format not valid.")
OUT_OF_TIME = Refusal(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
BAD_ASSERTION_SIGNATURE = Refusal(401, "invalid_client", 700027, "Client assertion contains an invalid signature.")


def no_match(iss: str = ISSUER, sub: str = SUBJECT, aud: str = EXCHANGE) -> Refusal:
    description = (
        "No matching federated identity record found for presented assertion. "
        f"Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'."
    )
    return Refusal(400, "invalid_request", 70021, description)


def _another_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Refuse:
    client_id: str
    assertion: str
    want: Refusal


REFUSALS: dict[str, Refuse] = {
    "app": Refuse("nobody", _assertion(), not_found("nobody")),
    "format": Refuse("app", "not-a-jwt", NOT_A_JWT),
    "garbage": Refuse("app", "a.b.c", NOT_A_JWT),
    "aud": Refuse("app", _assertion(aud=["api://other"]), no_match(aud="api://other")),
    "iss": Refuse("app", _assertion(iss="https://evil"), no_match(iss="https://evil")),
    "sub": Refuse("app", _assertion(sub="system:x"), no_match(sub="system:x")),
    "expired": Refuse("app", _assertion(exp=NOW - 1), OUT_OF_TIME),
    "early": Refuse("app", _assertion(nbf=NOW + DAY), OUT_OF_TIME),
    "time-before-signature": Refuse("app", _assertion(_another_rsa_key(), exp=NOW - 1), OUT_OF_TIME),
    "another-key": Refuse("app", _assertion(_another_rsa_key()), BAD_ASSERTION_SIGNATURE),
    "kid": Refuse("app", _assertion(kid="gone"), BAD_ASSERTION_SIGNATURE),
    "kty": Refuse("app", _assertion(EC_KEY, "ES256", "sa-key-1"), BAD_ASSERTION_SIGNATURE),
    "hs256": Refuse("app", _assertion(b"s" * 32, "HS256"), BAD_ASSERTION_SIGNATURE),
    "alg-none": Refuse("app", _assertion(None, "none"), BAD_ASSERTION_SIGNATURE),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_federated_assertions_entra_refuses(name: str) -> None:
    case = REFUSALS[name]
    with pytest.raises(AssertionRejected) as refused:
        verify_assertion([CREDENTIAL], case.client_id, case.assertion)
    got = refused.value
    assert Refusal(got.status, got.error, got.code, got.description) == case.want
    body = {k: v for k, v in got.body().items() if k in ("error", "error_description", "error_codes")}
    code = case.want.code
    assert body == {
        "error": case.want.error,
        "error_description": f"AADSTS{code}: {case.want.description}",
        "error_codes": [code],
    }
