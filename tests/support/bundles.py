"""The suite's one bundle builder: small, randomly initialised SqueezeBERT bundles built
through the real toolkit path, as folders or as bytes.

`build_tiny_bundle` runs the same export (fast formulation), INT8 quantization (calibrated on
SAMPLE_TEXTS, as shipped bundles are) and pack code that real models go through, on a model
small enough to build in seconds, so tests exercise real graphs and a real tokenizer without
any downloaded weights. Weights are random: predictions are deterministic but meaningless.
`bundle_files` gives the same bundle as `{file name: bytes}` under any name and version, for
tests of what moves bundles (OTA, signing, the models-directory watch); `install` puts a
bundle folder into a models directory the documented way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from edge_agent.bundle.layout import MANIFEST_FILE
from edge_agent.bundle.manifest import FileEntry, Task, parse_manifest

# A small vocabulary: whole words for readable tests, letters and ##letters so any
# other word still tokenizes into pieces instead of [UNK].
_WORD_LIST: Final = """
the a an and or but not no is are was were be been it this that these those i you he she
we they me him her us them my your his our their what which who when where why how all
any both each few more most other some such only own same so than too very can will just
should now good great bad terrible awful nice happy sad love hate like movie film story
plot actor acting music fun boring funny dull best worst ever never always again light
temperature sensor door open closed alarm fire smoke water leak battery low high error
warning ok status online offline reboot update hello thanks please help stop go on off
kitchen garage room one two three hot cold day night weather rain sun wind
"""
WORDS: Final = tuple(_WORD_LIST.split())
SPECIAL_TOKENS: Final = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
LETTERS: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
SAMPLE_TEXTS: Final = (
    "the movie was great fun",
    "what a terrible and boring film",
    "i love this story",
    "the kitchen door is open",
    "smoke alarm in the garage",
    "battery low on sensor two",
    "hello thanks for the help",
    "never again , the worst acting ever",
    "temperature high in room three",
    "it was ok i guess",
    "rain and wind all night",
    "please reboot the sensor now",
)
TINY_MAX_SEQ_LEN: Final = 32


def tiny_vocab() -> dict[str, int]:
    tokens = [*SPECIAL_TOKENS, *LETTERS, *(f"##{c}" for c in LETTERS), *WORDS, ",", ".", "!", "?"]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_tokenizer() -> Any:
    """A BERT-style WordPiece tokenizer over `tiny_vocab()` (lower-casing, [CLS] ... [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = tiny_vocab()
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def build_tiny_model(num_labels: int, seed: int) -> Any:
    """Random SqueezeBertForSequenceClassification: hidden 64, 2 layers, 4 heads, groups 4."""
    import torch
    from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

    config = SqueezeBertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=64,
        embedding_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=64,
        q_groups=4,
        k_groups=4,
        v_groups=4,
        post_attention_groups=1,
        intermediate_groups=4,
        output_groups=4,
        num_labels=num_labels,  # type: ignore[call-arg]  # a PretrainedConfig kwarg
    )
    torch.manual_seed(seed)
    model: Any = SqueezeBertForSequenceClassification(config)
    model.eval()
    # Much wider than the usual 0.02, so random logits depend on the text and predictions
    # differ between texts, which tests of labels, top-k and thresholds need.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                torch.nn.init.normal_(parameter, std=0.5)
    return model


def build_tiny_bundle(
    out_dir: Path,
    *,
    name: str = "tiny",
    version: str = "1.0.0",
    labels: Sequence[str] = ("negative", "positive"),
    task: Task = "single-label",
    seed: int = 0,
    with_fp32: bool = True,
) -> Path:
    """Build `out_dir/<name>/<version>` through the real export, quantize and pack path."""
    from edge_agent.toolkit.export.pack import pack_bundle
    from edge_agent.toolkit.export.quantize import calibration_feeds, quantize_int8
    from edge_agent.toolkit.export.to_onnx import export_onnx

    embedding = task == "embedding"  # an encoder: no labels, `embeddings` out
    model = build_tiny_model(max(1, len(labels)), seed)
    tokenizer = build_tiny_tokenizer()
    # Calibrated like a shipped bundle: static activation scales, batch-independent logits.
    calibration = calibration_feeds(tokenizer, SAMPLE_TEXTS, TINY_MAX_SEQ_LEN)
    with tempfile.TemporaryDirectory(prefix="tiny-bundle-") as work:
        fp32 = export_onnx(model, Path(work) / "model.fp32.onnx", embedding=embedding)
        int8 = quantize_int8(fp32, Path(work) / "model.onnx", calibration=calibration)
        return pack_bundle(
            Path(out_dir),
            name=name,
            version=version,
            task=task,
            labels=[] if embedding else list(labels),
            max_seq_len=TINY_MAX_SEQ_LEN,
            model=int8,
            fp32_model=fp32 if with_fp32 else None,
            tokenizer=tokenizer,
            golden_texts=SAMPLE_TEXTS,
            golden_count=3,
            metrics={"accuracy": 0.0},
            card={
                "intended_use": "tests only: random weights, meaningless predictions",
                "training_data": "none (randomly initialised)",
                "limitations": "predicts nothing useful",
            },
            replace=True,
        )


@functools.cache
def _reference_bundle(seed: int) -> dict[str, bytes]:
    """One INT8-only tiny bundle per seed and process, built once."""
    folder = build_tiny_bundle(
        Path(tempfile.mkdtemp(prefix="tiny-files-")), name="tiny", seed=seed, with_fp32=False
    )
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def bundle_files(
    name: str = "sentiment", version: str = "1.1.0", *, model: bytes | None = None, seed: int = 0
) -> dict[str, bytes]:
    """A real tiny bundle's files, filed as `name` `version`; `model` replaces model.onnx
    (the manifest's hashes follow; its golden examples are dropped, as they would not hold)."""
    reference = _reference_bundle(seed)
    files = {file: data for file, data in reference.items() if file != MANIFEST_FILE}
    manifest = parse_manifest(reference[MANIFEST_FILE])
    golden = manifest.golden
    if model is not None:
        files["model.onnx"] = model
        golden = ()
    entries = {
        file: FileEntry(hashlib.sha256(data).hexdigest(), len(data)) for file, data in files.items()
    }
    manifest = dataclasses.replace(
        manifest, name=name, version=version, files=entries, golden=golden
    )
    files[MANIFEST_FILE] = json.dumps(manifest.to_json(), indent=2).encode()
    return files


def tiny_onnx_model() -> Any:
    """The tiny bundle's INT8 graph as an `onnx.ModelProto`, for tests that edit graphs."""
    import onnx

    return onnx.load_from_string(_reference_bundle(0)["model.onnx"])


def edit_manifest(bundle_dir: Path, **changes: object) -> None:
    """Overwrite top-level manifest fields in place (the hashes are not updated: a test
    that edits a listed file says so itself)."""
    path = bundle_dir / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def write_bundle(models_dir: Path, files: dict[str, bytes]) -> Path:
    """`models_dir/<name>/<version>/` holding `files` (as they are: no safe install)."""
    document = json.loads(files[MANIFEST_FILE])
    folder: Path = models_dir / str(document["name"]) / str(document["version"])
    folder.mkdir(parents=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return folder


def install(
    source: Path,
    models_dir: Path,
    *,
    version: str | None = None,
    tamper: Callable[[Path], None] | None = None,
) -> Path:
    """The documented safe install: copy under a dot-name on the same filesystem, fsync,
    rename into place. `version` re-files the bundle (its manifest is edited to match);
    `tamper` damages the copy before it becomes visible."""
    manifest = json.loads((source / MANIFEST_FILE).read_text())
    version = version or str(manifest["version"])
    model_dir = models_dir / str(manifest["name"])
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{version}"
    shutil.copytree(source, staging)
    if version != manifest["version"]:
        manifest["version"] = version
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    if tamper is not None:
        tamper(staging)
    for path in staging.iterdir():
        with path.open("rb") as file:
            os.fsync(file.fileno())
    final = model_dir / version
    staging.rename(final)
    return final


@dataclasses.dataclass(frozen=True)
class SwapBundles:
    """Source bundles of model `tiny` for hot-swap tests, outside any models directory."""

    root: Path
    v1: Path  # 1.0.0, labels negative/positive
    v2: Path  # 2.0.0, same labels, other weights
    relabelled: Path  # 3.0.0, labels alarm/door/light


def build_swap_bundles(root: Path) -> SwapBundles:
    return SwapBundles(
        root,
        build_tiny_bundle(root, version="1.0.0", seed=1, with_fp32=False),
        build_tiny_bundle(root, version="2.0.0", seed=3, with_fp32=False),
        build_tiny_bundle(
            root, version="3.0.0", labels=("alarm", "door", "light"), seed=4, with_fp32=False
        ),
    )
