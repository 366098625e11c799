"""Azure ML tokens (authMode AMLToken): what the keys Secret holds for a client, when the backend asks Azure for a new
token (at Azure's refresh time, or after scoring refused one), and when the core comes back to replace the published
one (before its refresh time, when that comes before the next resync)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest

from gpu_model_operator.backends.azure.scoring import ScoringTokens
from gpu_model_operator.backends.base import ProbeResult
from gpu_model_operator.decision import PublishedSecret, Timing
from gpu_model_operator.keys import ScoringToken, keys_secret_data
from gpu_model_operator.reconcile import decide, still_settled
from tests.unit.test_reconcile import NOW, URI, compute, facts, observe, ready_status, service

#: Issued at NOW (2026-01-01T00:00:00Z) for an hour, to be refreshed after half of it, as the emulator does.
TOKEN = ScoringToken.from_azure("tok-1", 1767229200, 1767227400)
TOKEN_DATA = {
    "scoringUri": URI,
    "accessToken": "tok-1",
    "expiresAt": "2026-01-01T01:00:00Z",
    "refreshAfter": "2026-01-01T00:30:00Z",
}


def test_azure_s_answer_reads_as_a_token_whose_repr_hides_it() -> None:
    assert ScoringToken("tok-1", "2026-01-01T01:00:00Z", "2026-01-01T00:30:00Z") == TOKEN
    assert "tok-1" not in repr(TOKEN)


@dataclass(frozen=True)
class DataCase:
    keys: tuple[str, str] | None
    token: ScoringToken | None
    want: dict[str, str]


DATA: dict[str, DataCase] = {
    "keys": DataCase(("k1", "k2"), None, {"scoringUri": URI, "primaryKey": "k1", "secondaryKey": "k2"}),
    "a-token-and-its-times": DataCase(None, TOKEN, TOKEN_DATA),
    "no-auth": DataCase(None, None, {"scoringUri": URI}),
}


@pytest.mark.parametrize("name", DATA)
def test_what_the_secret_holds(name: str) -> None:
    case = DATA[name]
    assert keys_secret_data(URI, case.keys, case.token) == case.want


@dataclass(frozen=True)
class DueCase:
    now: str
    within: float
    want: bool


DUE: dict[str, DueCase] = {
    "fresh": DueCase(NOW, 0, False),
    "refresh-time-reached": DueCase("2026-01-01T00:30:00Z", 0, True),
    "refresh-time-before-the-next-resync": DueCase("2026-01-01T00:20:00Z", 900, True),
    "refresh-time-after-the-next-resync": DueCase("2026-01-01T00:10:00Z", 900, False),
}


@pytest.mark.parametrize("name", DUE)
def test_when_a_token_is_due(name: str) -> None:
    case = DUE[name]
    assert TOKEN.due(case.now, within=case.within) is case.want


def test_the_backend_keeps_a_token_until_its_refresh_time_and_forgets_a_refused_one() -> None:
    clock = [datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)]
    issued: list[str] = []

    async def read() -> ScoringToken:
        """A token for an hour, to be refreshed after half of it, from the clock's time."""
        issued.append(f"tok-{len(issued) + 1}")
        now = clock[0].timestamp()
        return ScoringToken.from_azure(issued[-1], now + 3600, now + 1800)

    tokens = ScoringTokens(lambda: clock[0])

    async def passes() -> list[str]:
        seen = [(await tokens.get("ep", read)).access_token]
        clock[0] = datetime(2026, 1, 1, 0, 29, tzinfo=timezone.utc)
        seen.append((await tokens.get("ep", read)).access_token)
        clock[0] = datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)  # Azure's refresh time
        seen.append((await tokens.get("ep", read)).access_token)
        tokens.answered("ep", 200)
        seen.append((await tokens.get("ep", read)).access_token)
        tokens.answered("ep", 401)  # scoring refused it
        seen.append((await tokens.get("ep", read)).access_token)
        return seen

    assert asyncio.run(passes()) == ["tok-1", "tok-1", "tok-2", "tok-2", "tok-3"]


def _ready_with(
    token: ScoringToken, secret: dict[str, str] | None, resync: float
) -> tuple[dict[str, str] | None, float | None]:
    """A healthy service with ``token`` and the Secret as ``secret``: what the pass publishes and when it comes back."""
    obs = observe(
        compute(),
        service(),
        probe=ProbeResult(True),
        token=token,
        secret=PublishedSecret(secret, ours=True) if secret is not None else None,
    )
    timing = Timing(poll=10, retry_base=900, resync=resync)
    decision = decide(replace(facts(obs, previous=ready_status()), timing=timing))
    return decision.publish, decision.requeue_after


@dataclass(frozen=True)
class PassCase:
    token: ScoringToken
    secret: dict[str, str] | None
    resync: float
    #: What the pass publishes, and in how many seconds it comes back (None: at the resync).
    want: tuple[dict[str, str] | None, float | None]


REFRESHED = ScoringToken("tok-2", "2026-01-01T01:30:00Z", "2026-01-01T01:00:00Z")
PASSES: dict[str, PassCase] = {
    "the-first-token-is-published": PassCase(TOKEN, None, 900, (TOKEN_DATA, None)),
    "a-published-token-due-after-the-next-resync-waits-for-it": PassCase(TOKEN, TOKEN_DATA, 900, (None, None)),
    "a-token-due-before-the-next-resync-brings-the-next-pass-at-its-refresh-time": PassCase(
        TOKEN, TOKEN_DATA, 3600, (None, 1800.0)
    ),
    "a-new-token-replaces-the-published-one": PassCase(
        REFRESHED,
        TOKEN_DATA,
        900,
        (
            {
                "scoringUri": URI,
                "accessToken": "tok-2",
                "expiresAt": "2026-01-01T01:30:00Z",
                "refreshAfter": REFRESHED.refresh_after,
            },
            None,
        ),
    ),
}


@pytest.mark.parametrize("name", PASSES)
def test_a_ready_pass_with_a_token(name: str) -> None:
    case = PASSES[name]
    assert _ready_with(case.token, case.secret, case.resync) == case.want


def test_a_settled_resource_whose_token_is_due_before_the_next_resync_takes_a_full_pass() -> None:
    obs = observe(
        compute(), service(), probe=ProbeResult(True), token=TOKEN, secret=PublishedSecret(TOKEN_DATA, ours=True)
    )
    assert still_settled(ready_status(), obs, NOW, within=900) is True
    assert still_settled(ready_status(), obs, NOW, within=3600) is False
