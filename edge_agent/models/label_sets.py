"""Which examples files serve which routes, and when one changed on disk.

A label set is keyed `<encoder model>+<examples path>` (pipeline.routing.Route.served_by): the
key can never be a model name (those match [a-z0-9_-]), so labellers and bundles share the
store's one table of what serves each route. Change detection is a stat signature (inode,
size, mtime), as the models directory's watch uses: an editor's write-and-rename and an
in-place save are both seen, and a failed file is not tried again until it changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelSetSource:
    key: str
    encoder: str  # the embedding model's name
    path: Path


Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class LabelSets:
    def __init__(self, sources: Iterable[LabelSetSource]) -> None:
        self.sources = {source.key: source for source in sources}
        self._seen: dict[str, Signature] = {}

    def using(self, encoder: str) -> list[tuple[LabelSetSource, Signature]]:
        """The sources an encoder serves, with their files' signatures now."""
        return [(s, _signature(s.path)) for s in self.sources.values() if s.encoder == encoder]

    def changed(self) -> list[tuple[LabelSetSource, Signature]]:
        """Sources whose file differs from the signature last `seen` for them, with the
        signature taken before the file is read (a write during the read is seen next time)."""
        changed = []
        for source in self.sources.values():
            signature = _signature(source.path)
            if source.key not in self._seen or signature != self._seen[source.key]:
                changed.append((source, signature))
        return changed

    def seen(self, source: LabelSetSource, signature: Signature) -> None:
        """The file as it was when built or refused: either way, not tried again until it
        changes."""
        self._seen[source.key] = signature
