"""Found by the fuzz test: JSON may spell a lone UTF-16 surrogate (`"\\udc80"`), which
json.loads accepts but which is no Unicode text. The tokenizer raised TypeError on it, so a
short one was retried until dead-lettered as `poison` (its batch-mates re-run one by one),
and a long one (cut by bytes before tokenizing) raised UnicodeEncodeError in decode
itself. It must be a plain error result instead."""

from __future__ import annotations

import json

import pytest

from edge_agent import messages


@pytest.mark.parametrize("text", ["hi \udc80 there", "\ud83d" + "x" * 5000])
def test_lone_surrogate_in_json_text_is_rejected_as_invalid_utf8(text: str) -> None:
    payload = json.dumps({"text": text, "id": "s1"}).encode()
    decoded = messages.decode(payload, messages.InputSpec(max_text_bytes=4096))
    assert isinstance(decoded, messages.Rejected)
    assert decoded.code == messages.INVALID_UTF8 and decoded.id == "s1"
