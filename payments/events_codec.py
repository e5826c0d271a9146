"""Turn a normalised :class:`GatewayEvent` into JSON and back, losslessly.

Webhooks are verified once, at ingestion; the stored normalised event is what
the apply task works from, so it never needs the signature (or the gateway) again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from payments.gateways import base

_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        base.GatewayEvent,
        base.GatewayPayment,
        base.GatewayRefund,
        base.GatewayDispute,
        base.GatewayFraudWarning,
        base.CardDetails,
        base.ThreeDSecure,
        base.FraudAssessment,
        base.NextAction,
    )
}


_PLAIN = (str, int, float, bool, type(None))
# Keys that mark our own encodings. A gateway's dict that holds one (metadata can hold anything)
# is wrapped as {"__map__": {...}}, so it comes back as the same dict, not a date or a class.
_MARKERS = ("__dc__", "__dt__", "__map__")


def _encode_dict(value: Mapping[Any, Any]) -> dict[str, Any]:
    out = {str(k): _encode(v) for k, v in value.items()}
    return {"__map__": out} if any(marker in out for marker in _MARKERS) else out


def _encode(value: Any) -> Any:
    if type(value) in _PLAIN:  # most leaves: answered before the slower checks below
        return value
    if type(value) is dict:
        return _encode_dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"__dc__": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name == "client_secret":
                continue  # never stored
            out[f.name] = _encode(getattr(value, f.name))
        return out
    if isinstance(value, datetime):
        return {"__dt__": value.isoformat()}
    if isinstance(value, Mapping):
        return _encode_dict(value)
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        if "__map__" in value and len(value) == 1:
            return {k: _decode(v) for k, v in value["__map__"].items()}
        if "__dt__" in value and len(value) == 1:
            return datetime.fromisoformat(value["__dt__"])
        if "__dc__" in value:
            cls = _CLASSES[value["__dc__"]]
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: _decode(v) for k, v in value.items() if k in names})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def encode(event: base.GatewayEvent) -> dict[str, Any]:
    return _encode(event)


def decode(data: Mapping[str, Any]) -> base.GatewayEvent:
    event = _decode(dict(data))
    if not isinstance(event, base.GatewayEvent):
        raise ValueError("stored webhook is not a GatewayEvent")
    return event
