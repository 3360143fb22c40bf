"""JSON Pointer (RFC 6901) for choosing fields in an input document, pure.

A configured field name that starts with `/` is a pointer (`/payload/message`, `/items/0`);
any other name is a top-level key, as before, so existing configs read the same fields.

Written here rather than taken from the `jsonpointer` package: resolving is ~30 lines, the
daemon's dependency list stays short (it runs on devices that are updated rarely), and the
pipeline needs what the package does not give directly: "absent" kept apart from a JSON
`null`, and a message that names the exact level where resolution stopped, because that
message is the error result the sender sees. `-` (the past-the-end index) never resolves,
since there is nothing there to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

_INDEX: Final = re.compile(r"0|[1-9][0-9]*")  # RFC 6901: no leading zeros, no sign


@dataclass(frozen=True)
class Missing:
    """A pointer that did not resolve; `reason` is one readable line."""

    reason: str


def is_pointer(field: str) -> bool:
    return field.startswith("/")


def pointer_problem(pointer: str) -> str | None:
    """Why a configured pointer is malformed, or None (checked when the config loads)."""
    if not is_pointer(pointer):
        return "expected a JSON Pointer starting with '/'"
    if re.search(r"~(?![01])", pointer):
        return "expected '~' only as '~0' (for ~) or '~1' (for /)"
    return None


def tokens(pointer: str) -> tuple[str, ...]:
    """The reference tokens, unescaped: `~1` -> `/` first, then `~0` -> `~` (RFC 6901 §4)."""
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:])


def resolve(document: Any, pointer: str) -> Any:
    """The value `pointer` names in `document`, or `Missing` saying where it stopped."""
    value = document
    walked = ""
    for token in tokens(pointer):
        here = walked or "the document"
        if isinstance(value, dict):
            if token not in value:
                return Missing(f"{here} has no member {token!r}")
            value = value[token]
        elif isinstance(value, list):
            if not _INDEX.fullmatch(token):
                return Missing(f"{here} is an array; {token!r} is not an array index")
            if int(token) >= len(value):
                return Missing(f"{here} has {len(value)} items, no index {token}")
            value = value[int(token)]
        else:
            return Missing(f"{here} is not an object or array, cannot take {token!r}")
        walked += "/" + token.replace("~", "~0").replace("/", "~1")
    return value


def select(document: dict[str, Any], field: str) -> Any:
    """A configured field: a pointer, or (not starting with '/') a top-level key."""
    if is_pointer(field):
        return resolve(document, field)
    if field in document:
        return document[field]
    return Missing(f"the document has no member {field!r}")
