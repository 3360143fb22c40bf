"""Payload decoding: every bad-input class gets its stable code; nothing ever raises."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.engine.prediction import LabelScore, Prediction
from edge_agent.pipeline import messages
from edge_agent.pipeline.messages import BadInput, InputSpec, Request, cut_text, decode

SPEC = InputSpec(max_payload_bytes=1000, max_text_bytes=50, passthrough=("room",))


def code(payload: bytes, spec: InputSpec = SPEC) -> str:
    result = decode(payload, spec)
    assert isinstance(result, BadInput), result
    return result.code


def test_plain_text_and_json() -> None:
    plain = decode(b"hello there", SPEC)
    assert isinstance(plain, Request) and plain.text == "hello there" and not plain.truncated
    assert plain.id == messages.payload_id(b"hello there")
    doc = decode(json.dumps({"text": "hi", "id": 7, "room": "r1", "x": 1}).encode(), SPEC)
    assert isinstance(doc, Request)
    assert (doc.text, doc.id, doc.passthrough) == ("hi", "7", {"room": "r1"})


def test_every_bad_input_class_has_its_code() -> None:
    assert code(b"\xff\xfe") == messages.INVALID_UTF8
    assert code(b"   \n") == messages.EMPTY_TEXT
    assert code(b'{"text": "   "}') == messages.EMPTY_TEXT
    assert code(b'{"text": ') == messages.INVALID_JSON
    assert code(b"not json", InputSpec(mode="json")) == messages.INVALID_JSON
    assert code(b'{"body": "x"}') == messages.MISSING_TEXT_FIELD
    assert code(b'{"text": 5}') == messages.WRONG_TYPE
    assert code(b"[1]", InputSpec(mode="json")) == messages.WRONG_TYPE
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert code(deep, InputSpec(max_payload_bytes=10**7)) == messages.TOO_DEEP
    assert code(b"x" * 1001) == messages.PAYLOAD_TOO_LARGE
    for bad_id in ("a/b", "a+b", "a#", "a\x00", "x" * 129, True, 1.5, [], ""):
        assert code(json.dumps({"text": "t", "id": bad_id}).encode()) == messages.INVALID_ID


def test_long_text_is_cut_by_bytes_and_flagged() -> None:
    result = decode(("é" * 100).encode(), SPEC)
    assert isinstance(result, Request) and result.truncated
    assert len(result.text.encode()) <= 50 and result.text == "é" * 25


def test_cut_cost_does_not_grow_with_input() -> None:
    huge = "word " * 2_000_000  # 10 MB
    started = time.perf_counter()
    cut, truncated = cut_text(huge, 4096)
    elapsed = time.perf_counter() - started
    assert truncated and len(cut.encode()) <= 4096
    small_started = time.perf_counter()
    cut_text("word " * 1000, 4096)
    # Both only touch ~4 KB; a generous ratio keeps this about cost growth, not speed.
    assert elapsed < 100 * max(time.perf_counter() - small_started, 1e-5)


def test_cut_text_boundaries() -> None:
    assert cut_text("abc", 3) == ("abc", False)
    assert cut_text("abcd", 3) == ("abc", True)
    assert cut_text("ab€", 4) == ("ab", True)
    assert cut_text("€" * 2, 6) == ("€€", False)


def test_encode_result_and_error_are_json() -> None:
    request = Request("id1", "t", truncated=True, passthrough={"room": "r"})
    outcome = Prediction("pos", 0.9, (LabelScore("pos", 0.9),), ("pos",), False, "m", "1.0.0")
    body = json.loads(
        messages.encode_result(request, outcome, topic="a/b", latency_ms=1.5, echo_text=False)
    )
    assert body["truncated"] is True and "text" not in body and body["passthrough"] == {"room": "r"}
    assert body["model"] == {"name": "m", "version": "1.0.0"}
    error = json.loads(
        messages.encode_error("i", topic="a", code="empty_text", message="text is empty")
    )
    assert error == {
        "id": "i",
        "topic": "a",
        "error": {"code": "empty_text", "message": "text is empty"},
    }


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_decode_never_raises(payload: bytes) -> None:
    for mode in ("auto", "text", "json"):
        result = decode(payload, InputSpec(mode=mode, max_payload_bytes=1500, max_text_bytes=100))  # type: ignore[arg-type]
        assert isinstance(result, Request | BadInput)
        if isinstance(result, Request):
            assert len(result.text.encode("utf-8", "surrogatepass")) <= 100
            assert result.text.strip()


# Strings that JSON can carry but UTF-8 cannot: lone surrogates, escaped as "\udc80".
_json_text = st.text(
    st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=20
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"id": _json_text | st.integers(), "text": _json_text},
        optional={"meta": _json_values},
    )
)
def test_whatever_decode_returns_encodes_to_json(document: dict[str, object]) -> None:
    # json.dumps escapes lone surrogates ("\udc80"), which json.loads turns back into them
    payload = json.dumps(document).encode()
    result = decode(payload, InputSpec(passthrough=("meta",)))
    if isinstance(result, BadInput):
        encoded = messages.encode_error(result.id, topic="t", code=result.code, message="m")
    else:
        outcome = Prediction("pos", 0.9, (LabelScore("pos", 0.9),), ("pos",), False, "m", "1")
        encoded = messages.encode_result(result, outcome, topic="t", latency_ms=1, echo_text=True)
    assert json.loads(encoded)["id"] == result.id


def test_passthrough_nested_beyond_the_bound_is_too_deep() -> None:
    spec = InputSpec(passthrough=("meta",))
    fine = json.dumps({"text": "hi", "meta": [[["a"]]] * 2}).encode()
    assert isinstance(decode(fine, spec), Request)
    # Deep enough to refuse, shallow enough for json.loads here (tests/integration/reliability
    # sends the 986 levels that once passed json.loads and then crashed json.dumps).
    deep = b'{"text":"hi","meta":' + b"[" * 100 + b"]" * 100 + b"}"
    result = decode(deep, spec)
    assert isinstance(result, BadInput) and result.code == messages.TOO_DEEP
    assert "meta" in result.message
    edge = b'{"text":"hi","meta":' + b"[" * 32 + b"]" * 32 + b"}"
    request = decode(edge, spec)
    assert isinstance(request, Request)
    assert json.loads(messages.encode_error(request.id, topic="t", code="x", message="m"))
