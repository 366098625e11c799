"""The Secret that publishes a service's scoring URI and keys in the resource's namespace."""

from __future__ import annotations


def keys_secret_name(resource_name: str) -> str:
    return f"{resource_name}-scoring-keys"


def keys_secret_data(scoring_uri: str, keys: tuple[str, str] | None) -> dict[str, str]:
    """What the Secret holds, decoded: the scoring URI, and the keys when the service takes keys."""
    data = {"scoringUri": scoring_uri}
    if keys is not None:
        data["primaryKey"], data["secondaryKey"] = keys
    return data
