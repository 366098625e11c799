"""The Secret that publishes a service's scoring URI and what a client needs to score: its keys, or (an online
endpoint with ``authMode: AMLToken``) an Azure ML token and when it expires."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

#: The Secret's keys for a token (how-to-authenticate-online-endpoint: Azure's token answer has ``accessToken``,
#: ``expiryTimeUtc`` and ``refreshAfterTimeUtc``; the times are written here in RFC 3339, as Kubernetes writes times).
ACCESS_TOKEN, EXPIRES_AT, REFRESH_AFTER = "accessToken", "expiresAt", "refreshAfter"


@dataclass(frozen=True)
class ScoringToken:
    """An Azure ML token of an online endpoint: what a client sends as ``Authorization: Bearer``, when Azure stops
    taking it, and when Azure advises asking for a new one. The token never shows in a repr (nor so in a log)."""

    access_token: str = field(repr=False)
    #: RFC 3339, UTC, to the second.
    expires_at: str
    refresh_after: str

    @staticmethod
    def from_azure(access_token: str, expiry_time_utc: float, refresh_after_time_utc: float) -> ScoringToken:
        """Azure's answer (EndpointAuthToken: the times as seconds since the epoch)."""
        return ScoringToken(access_token, rfc3339(expiry_time_utc), rfc3339(refresh_after_time_utc))

    def due(self, now: str, within: float = 0.0) -> bool:
        """Whether a new token should be asked for before ``within`` seconds from ``now`` (RFC 3339) have passed:
        Azure's refresh time has come by then."""
        return seconds_between(now, self.refresh_after) <= within


def keys_secret_name(resource_name: str) -> str:
    return f"{resource_name}-scoring-keys"


def keys_secret_data(
    scoring_uri: str, keys: tuple[str, str] | None, token: ScoringToken | None = None
) -> dict[str, str]:
    """What the Secret holds, decoded: the scoring URI, and the keys when the service takes keys, or the token and
    its times when it takes Azure ML tokens."""
    data = {"scoringUri": scoring_uri}
    if keys is not None:
        data["primaryKey"], data["secondaryKey"] = keys
    if token is not None:
        data[ACCESS_TOKEN], data[EXPIRES_AT], data[REFRESH_AFTER] = (
            token.access_token,
            token.expires_at,
            token.refresh_after,
        )
    return data


def rfc3339(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: str, end: str) -> float:
    """``end`` minus ``start``, both RFC 3339 UTC to the second (as the status's times are)."""
    return (_parse(end) - _parse(start)).total_seconds()


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
