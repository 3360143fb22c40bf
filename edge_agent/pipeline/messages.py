"""Payloads in, results out: pure functions, no I/O, no model.

`decode` turns any bytes into a `Request` (text to classify) or a `BadInput` (a stable
error code and a clear message). It never raises for any input: invalid UTF-8, deep JSON
(which makes Python's json raise RecursionError, not ValueError), wrong types and
oversized payloads all become `BadInput`. Long text is cut by bytes *before* it reaches
the tokenizer, whose cost grows with the whole input, and the cut is flagged.
The encode functions build the published JSON (schema in docs/design.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from edge_agent.engine.prediction import Prediction  # pure data, no onnxruntime
from edge_agent.pipeline import pointer, routing

MAX_ID_CHARS: Final = 128
# Passthrough values are echoed in the result. json.loads accepts nesting that json.dumps
# then cannot write back (RecursionError, which once killed the worker): a bound far below
# either, and far above any real metadata.
MAX_PASSTHROUGH_DEPTH: Final = 32
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")

# Stable error codes, part of the published contract (docs/design.md).
INVALID_UTF8: Final = "invalid_utf8"
EMPTY_TEXT: Final = "empty_text"
INVALID_JSON: Final = "invalid_json"
MISSING_TEXT_FIELD: Final = "missing_text_field"
WRONG_TYPE: Final = "wrong_type"
TOO_DEEP: Final = "too_deep"
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
INVALID_ID: Final = "invalid_id"
NO_MODEL: Final = "no_model"
POISON: Final = "poison"
INVALID_TOPIC: Final = "invalid_topic"  # the route's output topic for it would be refused
INTERNAL_ERROR: Final = "internal_error"  # the agent failed on this message; it keeps serving

InputMode = Literal["auto", "text", "json"]


@dataclass(frozen=True)
class InputSpec:
    """How one route reads its payloads."""

    mode: InputMode = "auto"
    text_field: str = "text"
    id_field: str = "id"
    passthrough: tuple[str, ...] = ()
    max_payload_bytes: int = 65536
    max_text_bytes: int = 4096


@dataclass(frozen=True)
class Request:
    id: str
    text: str
    truncated: bool  # cut to max_text_bytes before tokenizing
    passthrough: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadInput:
    id: str
    code: str
    message: str


def payload_id(payload: bytes) -> str:
    """Stable id for payloads without a usable one: the same bytes always get the same id,
    so a redelivered message's result can be matched to the first one."""
    return hashlib.sha256(payload).hexdigest()[:16]


def decode(payload: bytes, spec: InputSpec) -> Request | BadInput:
    fallback_id = payload_id(payload)
    if len(payload) > spec.max_payload_bytes:
        return BadInput(
            fallback_id,
            PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes, the limit is {spec.max_payload_bytes}",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadInput(
            fallback_id, INVALID_UTF8, f"payload is not valid UTF-8 at byte {error.start}"
        )
    wants_json = spec.mode == "json" or (spec.mode == "auto" and text.lstrip().startswith("{"))
    if not wants_json:
        return _text_request(fallback_id, text, spec, {})
    return _decode_json(fallback_id, text, spec)


def _decode_json(fallback_id: str, text: str, spec: InputSpec) -> Request | BadInput:
    try:
        document = json.loads(text)
    except RecursionError:
        return BadInput(fallback_id, TOO_DEEP, "JSON is nested too deeply")
    except ValueError as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        where = f" at character {error.pos}" if isinstance(error, json.JSONDecodeError) else ""
        return BadInput(fallback_id, INVALID_JSON, f"payload is not valid JSON: {detail}{where}")
    if not isinstance(document, dict):
        return BadInput(
            fallback_id, WRONG_TYPE, f"expected a JSON object, got {_json_type(document)}"
        )
    message_id = fallback_id
    raw_id = pointer.select(document, spec.id_field)
    if not isinstance(raw_id, pointer.Missing):  # no id: the payload hash stands in
        usable = _usable_id(raw_id)
        if usable is None:
            return BadInput(
                fallback_id,
                INVALID_ID,
                f"field {spec.id_field!r} must be a string or integer of at most "
                f"{MAX_ID_CHARS} characters without + # / or NUL",
            )
        message_id = usable
    value = pointer.select(document, spec.text_field)
    if isinstance(value, pointer.Missing):
        if not pointer.is_pointer(spec.text_field):
            message = f"JSON object has no {spec.text_field!r} field"
        else:
            message = f"text pointer {spec.text_field!r} does not resolve: {value.reason}"
        return BadInput(message_id, MISSING_TEXT_FIELD, message)
    if not isinstance(value, str):
        return BadInput(
            message_id,
            WRONG_TYPE,
            f"field {spec.text_field!r} must be a string, got {_json_type(value)}",
        )
    # Passthrough fields are optional, pointers or not: an absent one is left out, as a
    # missing top-level name always was. Results key them by the name as configured.
    extra: dict[str, Any] = {}
    for name in spec.passthrough:
        selected = pointer.select(document, name)
        if not isinstance(selected, pointer.Missing):
            extra[name] = selected
    return _text_request(message_id, value, spec, extra)


def _text_request(
    message_id: str, text: str, spec: InputSpec, extra: dict[str, Any]
) -> Request | BadInput:
    for name, value in extra.items():
        if _deeper_than(value, MAX_PASSTHROUGH_DEPTH):
            return BadInput(
                message_id,
                TOO_DEEP,
                f"passthrough field {name!r} is nested more than {MAX_PASSTHROUGH_DEPTH} deep",
            )
    if not text.strip():
        return BadInput(message_id, EMPTY_TEXT, "text is empty")
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate is not None:
        # JSON can escape one ("\udc80"); it is no Unicode text: the tokenizer raises on it.
        return BadInput(
            message_id,
            INVALID_UTF8,
            f"text has a lone UTF-16 surrogate at character {surrogate.start()}",
        )
    cut, truncated = cut_text(text, spec.max_text_bytes)
    return Request(message_id, cut, truncated, extra)


def _deeper_than(value: object, limit: int) -> bool:
    """True when JSON `value` nests objects/arrays more than `limit` levels; iterative, so
    the check itself cannot recurse too deeply."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def cut_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut text to at most max_bytes of UTF-8 on a character boundary.

    A character uses at most 4 bytes, so a text of at most max_bytes // 4 characters
    cannot be too long and skips the encode. Otherwise only the first max_bytes + 4
    characters are encoded, so a 10 MB text costs what a long sentence costs.
    """
    if len(text) * 4 <= max_bytes:
        return text, False
    head = text[: max_bytes + 4].encode("utf-8")
    if len(head) <= max_bytes and len(text) <= max_bytes + 4:
        return text, False
    return head[:max_bytes].decode("utf-8", errors="ignore"), True


def _usable_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS or not routing.is_plain_level(text):
        return None
    if _LONE_SURROGATE.search(text):
        return None  # JSON can escape one; no MQTT topic or UTF-8 result can carry it
    return text


def _json_type(value: object) -> str:
    names: Mapping[type, str] = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def encode_result(
    request: Request,
    prediction: Prediction,
    *,
    topic: str | None,
    latency_ms: float,
    echo_text: bool,
) -> bytes:
    return dump(
        result_body(request, prediction, topic=topic, latency_ms=latency_ms, echo_text=echo_text)
    )


def result_body(
    request: Request,
    prediction: Prediction,
    *,
    topic: str | None,
    latency_ms: float,
    echo_text: bool,
) -> dict[str, Any]:
    """The result document as data, before any per-route field selection."""
    body: dict[str, Any] = {
        "id": request.id,
        "topic": topic,
        "label": prediction.label,
        "score": round(prediction.score, 6),
        "top_k": [
            {"label": item.label, "score": round(item.score, 6)} for item in prediction.top_k
        ],
        "labels": list(prediction.labels),
        "model": {"name": prediction.model, "version": prediction.version},
        "latency_ms": round(latency_ms, 3),
        "truncated": prediction.truncated or request.truncated,
    }
    if echo_text:
        body["text"] = request.text
    if request.passthrough:
        body["passthrough"] = request.passthrough
    return body


def encode_error(message_id: str, *, topic: str | None, code: str, message: str) -> bytes:
    return dump({"id": message_id, "topic": topic, "error": {"code": code, "message": message}})


def dump(body: Mapping[str, Any]) -> bytes:
    # ensure_ascii=False keeps non-Latin labels readable; separators keep payloads small.
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate that JSON escaped on the way in ("\udc80", e.g. in a passthrough
        # field) has no UTF-8 form: escape it again on the way out, as it arrived.
        return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
