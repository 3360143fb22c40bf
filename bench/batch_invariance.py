"""Does a text's answer depend on its batch-mates? Through the engine, per bundle.

    PYTHONPATH=. python bench/batch_invariance.py --bundle models/sentiment/1.1.4 \
        --bundle models/intent/1.2.0 --threads 1

Each bundle's evaluation texts (sentiment: the 3,000 held-out SST-2 rows of the recipe's
split; intent: CLINC150 validation, 3,000 in scope + 100 out of scope) are classified one
at a time, then in batches of --batch (shuffled with a fixed seed, so batch-mates of
every length meet), through `load_classifier` in INT8. Reports how many labels differ
between the two runs and the largest difference of any label's score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def texts_for(name: str, datasets: Path, tokenizer_file: Path) -> list[str]:
    if name == "intent":
        raw = json.loads((datasets / "clinc150" / "data_train_val.json").read_text("utf-8"))
        return [text for text, _ in raw["val"] + raw["oos_val"]]
    from tokenizers import Tokenizer

    from recipes.build_models import SEED
    from recipes.tasks import load_sst2

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return list(load_sst2(datasets, tokenizer, SEED).texts["held_out"].texts)


def main() -> int:
    from edge_agent.engine.classifier import load_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, action="append", required=True)
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    args = parser.parse_args()
    total_texts = total_flips = 0
    worst = 0.0
    for bundle in args.bundle:
        classifier = load_classifier(bundle, precision=args.precision, threads=args.threads)
        name = classifier.manifest.name
        texts = texts_for(name, args.datasets, bundle / "tokenizer.json")
        order = np.random.default_rng(0).permutation(len(texts))
        shuffled = [texts[i] for i in order]
        alone_logits = np.concatenate([classifier.logits([t])[0] for t in shuffled])
        batched_logits = np.concatenate(
            [
                classifier.logits(shuffled[start : start + args.batch])[0]
                for start in range(0, len(shuffled), args.batch)
            ]
        )
        alone = classifier.predictions(alone_logits, [False] * len(texts))
        batched = classifier.predictions(batched_logits, [False] * len(texts))
        flips = sum(a.label != b.label for a, b in zip(alone, batched, strict=True))
        diff = float(
            np.abs(classifier.scores(alone_logits) - classifier.scores(batched_logits)).max()
        )
        logit_diff = float(np.abs(alone_logits - batched_logits).max())
        print(
            f"{name} {classifier.manifest.version} ({classifier.precision}): {len(texts)} texts,"
            f" batch 1 vs batch {args.batch}: {flips} labels differ, max |score diff|"
            f" {diff:.3g}, max |logit diff| {logit_diff:.3g}",
            flush=True,
        )
        total_texts, total_flips = total_texts + len(texts), total_flips + flips
        worst = max(worst, diff)
    print(f"all: {total_texts} texts, {total_flips} labels differ, max |score diff| {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
