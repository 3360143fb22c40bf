"""Sentences for checks (export agreement, INT8 agreement, golden examples).

Reads `.tsv` files with a header whose first column is the text (GLUE style, e.g.
SST-2's `sentence<TAB>label`) and plain `.txt` files with one text per line. By default
the SST-2 training sentences under `../shared/datasets` relative to the repository root,
or under `$EDGE_AGENT_DATASETS` when set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

DATASETS_ENV: Final = "EDGE_AGENT_DATASETS"
DEFAULT_TEXTS: Final = Path("sst2") / "train.tsv"


def datasets_dir() -> Path:
    override = os.environ.get(DATASETS_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3].parent / "shared" / "datasets"


def default_texts_path() -> Path:
    return datasets_dir() / DEFAULT_TEXTS


def read_texts(path: Path, limit: int | None = None) -> list[str]:
    """Non-empty texts from `path`; with `limit`, that many spread evenly over the file
    (datasets are often sorted by label or source; the first N would be one-sided)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if path.suffix == ".tsv":
        lines = [line.split("\t", 1)[0] for line in lines[1:]]
    texts = [line.strip() for line in lines if line.strip()]
    if limit is None or limit >= len(texts):
        return texts
    step = len(texts) / limit
    return [texts[int(i * step)] for i in range(limit)]
