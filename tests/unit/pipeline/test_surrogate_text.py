"""Found by the fuzz test: JSON may spell a lone UTF-16 surrogate (`"\\udc80"`), which
json.loads accepts but which is no Unicode text. The tokenizer raised TypeError on it, so a
short one was retried until dead-lettered as `poison` (its batch-mates re-run one by one),
and a long one (cut by bytes before tokenizing) raised UnicodeEncodeError in decode
itself. It must be a plain error result instead.

Found again in the id field: an id of "\udd5b" passed the id checks, and encoding the error
result for the same message raised UnicodeEncodeError in the worker, which stopped the
agent. A passthrough field could do the same to a labelled result."""

from __future__ import annotations

import json

import pytest

from edge_agent.engine.prediction import LabelScore, Prediction
from edge_agent.pipeline import messages


@pytest.mark.parametrize("text", ["hi \udc80 there", "\ud83d" + "x" * 5000])
def test_lone_surrogate_in_json_text_is_rejected_as_invalid_utf8(text: str) -> None:
    payload = json.dumps({"text": text, "id": "s1"}).encode()
    decoded = messages.decode(payload, messages.InputSpec(max_text_bytes=4096))
    assert isinstance(decoded, messages.BadInput)
    assert decoded.code == messages.INVALID_UTF8 and decoded.id == "s1"


def test_lone_surrogate_in_the_id_makes_the_id_invalid() -> None:
    payload = json.dumps({"id": "a\udd5b", "text": "hello"}).encode()
    decoded = messages.decode(payload, messages.InputSpec())
    assert isinstance(decoded, messages.BadInput) and decoded.code == messages.INVALID_ID
    assert decoded.id == messages.payload_id(payload)  # the fallback id, encodable
    error = messages.encode_error(decoded.id, topic="t", code=decoded.code, message="m")
    assert json.loads(error)["id"] == decoded.id


def test_lone_surrogate_in_a_passthrough_field_is_escaped_in_the_result() -> None:
    payload = json.dumps({"id": "p1", "text": "hello", "meta": {"room": "\udc80 x"}}).encode()
    decoded = messages.decode(payload, messages.InputSpec(passthrough=("meta",)))
    assert isinstance(decoded, messages.Request)
    outcome = Prediction("pos", 0.9, (LabelScore("pos", 0.9),), ("pos",), False, "m", "1.0.0")
    result = messages.encode_result(decoded, outcome, topic="t", latency_ms=1.0, echo_text=True)
    body = json.loads(result)  # valid JSON (ASCII, the surrogate escaped as it arrived)
    assert body["passthrough"] == {"meta": {"room": "\udc80 x"}} and body["text"] == "hello"
