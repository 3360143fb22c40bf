"""An encoder checkpoint with query pooling (toolkit/train/query_pooling.py) exports to a graph
that computes what the torch forward computes, alone or padded in a batch, and its last layer
runs for one row like a classifier's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.toolkit.export.to_onnx import encode, load_checkpoint_tokenizer
from edge_agent.toolkit.train.bundle import Deployable, export_graphs
from edge_agent.toolkit.train.data import encode_texts
from edge_agent.toolkit.train.embedding import student_embeddings
from tests.support.bundles import SAMPLE_TEXTS

MAX_SEQ_LEN = 64


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["embeddings"], feeds)[0])


def test_query_pooled_graph_matches_torch_and_ignores_padding(
    tiny_query_base: Path, tmp_path: Path
) -> None:
    from transformers import SqueezeBertForSequenceClassification

    folder = tiny_query_base
    tokenizer = load_checkpoint_tokenizer(folder)
    fp32, int8 = export_graphs(
        Deployable(folder, tokenizer),
        tmp_path / "graphs",
        calibration_texts=SAMPLE_TEXTS,
        max_seq_len=MAX_SEQ_LEN,
        embedding=True,
    )
    model = SqueezeBertForSequenceClassification.from_pretrained(str(folder)).eval()
    torch_query = student_embeddings(model, encode_texts(tokenizer, SAMPLE_TEXTS, MAX_SEQ_LEN))
    batch = encode(tokenizer, SAMPLE_TEXTS, MAX_SEQ_LEN)
    graph_fp32 = _run(fp32, batch)
    off_query = np.abs(graph_fp32 - torch_query).max()
    assert off_query < 1e-5

    # The config switched the pooling: the graph is far nearer the query-pooled function than
    # the mean-pooled one (close on a random tiny model, whose attention is near uniform).
    model.config.sentence_pooling = "mean"
    torch_mean = student_embeddings(model, encode_texts(tokenizer, SAMPLE_TEXTS, MAX_SEQ_LEN))
    assert np.abs(graph_fp32 - torch_mean).max() > 10 * off_query

    # Alone or padded beside longer texts, a text gets the same INT8 embedding up to float
    # summation order (activation scales are static; padding adds zeros to the mean and the
    # attention), the bound the engine's batch-invariance test holds classifiers to.
    padded = _run(int8, batch)
    alone = np.concatenate(
        [_run(int8, encode(tokenizer, [text], MAX_SEQ_LEN)) for text in SAMPLE_TEXTS]
    )
    assert batch["attention_mask"].sum(axis=1).min() < batch["attention_mask"].shape[1]
    np.testing.assert_allclose(padded, alone, rtol=0, atol=1e-5)
    assert (padded * graph_fp32).sum(axis=1).min() > 0.99


def test_query_pooled_graph_runs_its_last_layer_for_one_row(
    tiny_base: Path, tiny_query_base: Path, tmp_path: Path
) -> None:
    """Fewer feed-forward rows than mean pooling: the last layer's GELU sees [b, 1, ...]."""
    import onnx

    from edge_agent.toolkit.export.to_onnx import export_onnx

    query = export_onnx(tiny_query_base, tmp_path / "q.onnx", embedding=True)
    mean = export_onnx(tiny_base, tmp_path / "mean.onnx", embedding=True)
    feeds = encode(load_checkpoint_tokenizer(tiny_base), SAMPLE_TEXTS[:3], MAX_SEQ_LEN)
    length = feeds["input_ids"].shape[1]

    def gelu_rows(path: Path) -> list[int]:
        import onnxruntime as ort

        model = onnx.load(str(path))
        gelus = [n.output[0] for n in model.graph.node if n.op_type == "Gelu"]
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(g) for g in gelus)
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return [np.asarray(session.run([g], feeds)[0]).shape[1] for g in gelus]

    query_rows, mean_rows = gelu_rows(query), gelu_rows(mean)
    assert set(mean_rows) == {length}
    # tiny_base has 2 layers: the first layer's GELUs see every token, the last layer's one row.
    half = len(mean_rows) // 2
    assert sorted(query_rows) == [1] * half + [length] * half
