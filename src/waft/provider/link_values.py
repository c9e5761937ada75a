"""Reading link values the way wasmCloud providers do: keys case-insensitive, JSON config inline
(`config_json`) or base64 (`config_b64`, often unpadded). Shared by every provider's settings."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any


class SettingsError(ValueError):
    """Link values that cannot configure a provider; the message names the bad value."""


def lowercase_keys(values: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for key, value in values.items():
        name = key.lower()
        if name in lowered:
            raise SettingsError(f"link values repeat the key {name!r} in another case (keys are case-insensitive)")
        lowered[name] = value
    return lowered


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"invalid {what}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"invalid {what}: expected a JSON object")
    return data


def b64_json(text: str) -> dict[str, Any]:
    padded = text.strip() + "=" * (-len(text.strip()) % 4)  # wasmCloud writes it unpadded
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"invalid config_b64: not base64 ({exc})") from None
    return json_object(raw.decode("utf-8", "replace"), "config_b64")
