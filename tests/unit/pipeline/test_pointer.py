"""JSON Pointer (RFC 6901) resolution and its use for text, id and passthrough fields."""

from __future__ import annotations

import json

from edge_agent.pipeline import messages
from edge_agent.pipeline.messages import BadInput, InputSpec, Request, decode
from edge_agent.pipeline.pointer import Missing, pointer_problem, resolve, tokens

# The example document and pointers of RFC 6901, section 5.
RFC_DOCUMENT = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
}
RFC_EXAMPLES = {
    "": RFC_DOCUMENT,
    "/foo": ["bar", "baz"],
    "/foo/0": "bar",
    "/": 0,
    "/a~1b": 1,
    "/c%d": 2,
    "/e^f": 3,
    "/g|h": 4,
    "/i\\j": 5,
    '/k"l': 6,
    "/ ": 7,
    "/m~0n": 8,
}


def test_every_rfc_6901_example_resolves_to_its_value() -> None:
    for pointer, expected in RFC_EXAMPLES.items():
        assert resolve(RFC_DOCUMENT, pointer) == expected, pointer


def test_unescaping_is_tilde_one_first() -> None:
    # "~01" is "~1" literally (not "/"): ~1 is replaced before ~0.
    assert tokens("/~01") == ("~1",)
    assert resolve({"~1": "x", "/": "y"}, "/~01") == "x"


def test_unresolvable_pointers_say_where_they_stopped() -> None:
    document = {"a": {"b": [10, 20]}, "s": "text", "n": None}
    assert resolve(document, "/n") is None  # a JSON null is a value, not missing
    cases = {
        "/x": "the document has no member 'x'",
        "/a/c": "/a has no member 'c'",
        "/a/b/2": "/a/b has 2 items, no index 2",
        "/a/b/01": "/a/b is an array; '01' is not an array index",
        "/a/b/-": "/a/b is an array; '-' is not an array index",
        "/s/0": "/s is not an object or array, cannot take '0'",
    }
    for pointer, reason in cases.items():
        assert resolve(document, pointer) == Missing(reason), pointer


def test_malformed_pointers_are_named() -> None:
    assert pointer_problem("/a/~2") is not None
    assert pointer_problem("/a~") is not None
    assert pointer_problem("a") is not None
    assert pointer_problem("/a/~0~1") is None


def test_nested_text_id_and_passthrough_are_selected() -> None:
    spec = InputSpec(
        text_field="/payload/message",
        id_field="/meta/id",
        passthrough=("/meta/room", "source", "/absent"),
    )
    payload = {"payload": {"message": "door opened"}, "meta": {"id": 42, "room": "hall"}}
    payload["source"] = "z2m"
    result = decode(json.dumps(payload).encode(), spec)
    assert isinstance(result, Request)
    assert (result.text, result.id) == ("door opened", "42")
    assert result.passthrough == {"/meta/room": "hall", "source": "z2m"}


def test_a_text_pointer_that_does_not_resolve_is_an_error_result() -> None:
    spec = InputSpec(text_field="/payload/message", id_field="/meta/id")
    result = decode(b'{"payload": {"msg": "x"}, "meta": {"id": "m1"}}', spec)
    assert isinstance(result, BadInput)
    assert result.code == messages.MISSING_TEXT_FIELD and result.id == "m1"
    assert result.message == (
        "text pointer '/payload/message' does not resolve: /payload has no member 'message'"
    )
    wrong = decode(b'{"payload": {"message": ["x"]}}', spec)
    assert isinstance(wrong, BadInput) and wrong.code == messages.WRONG_TYPE


def test_top_level_names_keep_working() -> None:
    result = decode(b'{"text": "hi", "id": "a"}', InputSpec())
    assert isinstance(result, Request) and (result.text, result.id) == ("hi", "a")
    missing = decode(b'{"body": "hi"}', InputSpec())
    assert isinstance(missing, BadInput)
    assert missing.message == "JSON object has no 'text' field"
