"""The MPNet teacher reads the MiniLM tokenizer's ids through a lookup table."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from edge_agent.toolkit.train.minilm import minilm_dir
from edge_agent.toolkit.train.mpnet import (
    MPNET_BOS,
    MPNET_EOS,
    MPNET_PAD,
    bert_to_mpnet_ids,
    mpnet_dir,
)


def unpadded(path: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    return tokenizer


TEXTS = (
    "meeting moved to 3pm",
    "the café's £5 naïve résumé , sadly",
    "ALARM: pump 3 pressure low!!",
)


def test_special_tokens_move_to_mpnets_and_the_rest_shift_by_four() -> None:
    bert = unpadded(minilm_dir() / "tokenizer.json")
    table = bert_to_mpnet_ids()
    ids = bert.encode("a fine movie").ids
    mapped = table[ids].tolist()
    assert mapped[0] == MPNET_BOS and mapped[-1] == MPNET_EOS
    assert mapped[1:-1] == [i + 4 for i in ids[1:-1]]
    assert int(table[0]) == MPNET_PAD


@pytest.mark.skipif(
    not (mpnet_dir() / "tokenizer.json").exists(),
    reason="all-mpnet-base-v2 not fetched (python recipes/build_models.py sentiment --fetch-mpnet)",
)
def test_mapped_ids_are_the_ones_mpnets_own_tokenizer_makes() -> None:
    bert = unpadded(minilm_dir() / "tokenizer.json")
    mpnet = unpadded(mpnet_dir() / "tokenizer.json")
    table = bert_to_mpnet_ids()
    for text in TEXTS:
        assert table[bert.encode(text).ids].tolist() == mpnet.encode(text).ids
