"""Drop vocabulary entries the tokenizer can never produce, from tokenizer.json and weights.

bert-base-uncased's WordPiece vocabulary carries 994 `[unusedN]` placeholders. The BERT
pre-tokenizer splits on `[` and `]`, so no text ever maps to them, yet each costs an embedding
row in the bundle (384 bytes INT8): about 0.38 MB of a 16 MB budget. Removing them renumbers
the remaining ids compactly, so tokenizer.json and the embedding matrix change together.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

UNUSED: Final = re.compile(r"^\[unused\d+\]$")


def _remap(tokenizer: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    new_id = {old: new for new, old in enumerate(keep)}
    model = tokenizer["model"]
    model["vocab"] = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
    for added in tokenizer.get("added_tokens") or []:
        added["id"] = new_id[added["id"]]
    processor = tokenizer.get("post_processor") or {}
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # BertProcessing stores [token, id] pairs
        if key in processor:
            processor[key][1] = new_id[processor[key][1]]
    padding = tokenizer.get("padding")
    if padding:
        padding["pad_id"] = new_id[padding["pad_id"]]
    return tokenizer


def prune_unused_vocab(checkpoint: Path, out: Path) -> int:
    """Copy a SqueezeBERT checkpoint without the `[unusedN]` tokens; returns how many went."""
    import shutil

    from edge_agent.toolkit.train.relative_bias import load_classifier

    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    if tokenizer["model"].get("type") != "WordPiece":
        raise ValueError(f"{checkpoint}/tokenizer.json: only WordPiece vocabularies are pruned")
    keep = sorted(i for token, i in vocab.items() if not UNUSED.match(token))
    removed = len(vocab) - len(keep)
    model = load_classifier(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    if removed:
        import torch

        embeddings = model.get_input_embeddings()
        weight: Any = embeddings.weight
        rows = weight.data[torch.tensor(keep)].clone()
        new = torch.nn.Embedding(len(keep), rows.shape[1], padding_idx=None)
        new.weight.data.copy_(rows)
        model.set_input_embeddings(new)
        model.config.vocab_size = len(keep)
        model.config.pad_token_id = keep.index(model.config.pad_token_id or 0)
        tokenizer = _remap(tokenizer, keep)
    model.save_pretrained(str(out))
    (out / "tokenizer.json").write_text(
        json.dumps(tokenizer, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
    )
    vocab_txt = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab_txt), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (checkpoint / name).exists():
            shutil.copyfile(checkpoint / name, out / name)
    return removed
