"""INT8/fp32 argmax agreement of sentiment graphs on the 3,000 held-out SST-2 rows, per batch size.

    python recipes/repack_bundle.py sentiment --bundle <1.1.0> --work runs/sentiment-static \
        --version 1.1.3                     # writes runs/sentiment-static/graphs/
    git show f12caf7:models/sentiment/1.1.2/model.onnx > sentiment-1.1.2.onnx  # dynamic scales
    PYTHONPATH=. python bench/int8_fidelity.py --fp32 runs/sentiment-static/graphs/model.fp32.onnx \
        --int8 models/sentiment/1.1.3/model.onnx sentiment-1.1.2.onnx

Dynamic quantization (1.1.2 and before) scales each batch's activations together, so its
agreement depends on the batch size the agent runs (1 for a lone message, up to max_batch
under load); static scales (1.1.3) give the same figure at every batch size. With
--unsigned every INT8 graph is also measured with its int8 weights stored as uint8 with
zero point 128: the same integers, but onnxruntime then takes a kernel that cannot
saturate on x86 CPUs without VNNI (see docs/benchmarks.md); on ARM and VNNI CPUs the two
agree, and for int7 weights (the default) they agree everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def unsigned_copy(int8: Path, out: Path) -> Path:
    """`int8` with its int8 weights stored as uint8 (quantize.as_unsigned_weights)."""
    import onnx

    from edge_agent.toolkit.export.quantize import as_unsigned_weights

    model = onnx.load(str(int8))
    as_unsigned_weights(model)
    onnx.save(model, str(out))
    return out


def main() -> int:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from edge_agent.engine.session import session_options
    from edge_agent.toolkit.export.to_onnx import encode
    from recipes.build_models import SEED
    from recipes.tasks import load_sst2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True, help="reference fp32 graph")
    parser.add_argument("--int8", type=Path, nargs="+", required=True, help="INT8 graphs")
    parser.add_argument(
        "--tokenizer", type=Path, default=REPO / "models/sentiment/1.1.4/tokenizer.json"
    )
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--unsigned", action="store_true", help="also uint8-weight copies")
    args = parser.parse_args()
    manifest = json.loads((args.tokenizer.parent / "manifest.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    texts = list(load_sst2(args.datasets, tokenizer, SEED).texts["held_out"].texts)
    with tempfile.TemporaryDirectory() as scratch:
        graphs = {str(path): path for path in args.int8}
        if args.unsigned:
            for i, path in enumerate(args.int8):
                graphs[f"{path} (uint8 weights)"] = unsigned_copy(path, Path(scratch) / f"{i}.onnx")
        sessions = {
            name: ort.InferenceSession(
                str(path), session_options(), providers=["CPUExecutionProvider"]
            )
            for name, path in {"fp32": args.fp32, **graphs}.items()
        }
        for batch in args.batches:
            feeds = [
                encode(tokenizer, texts[start : start + batch], manifest["max_seq_len"])
                for start in range(0, len(texts), batch)
            ]
            labels = {
                name: np.concatenate([s.run(["logits"], f)[0].argmax(axis=1) for f in feeds])
                for name, s in sessions.items()
            }
            for name in graphs:
                same = float(np.mean(labels[name] == labels["fp32"]))
                print(f"batch {batch:3d}  {name}: agrees with fp32 on {same:.2%} of {len(texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
