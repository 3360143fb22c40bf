"""Pure parts of training: weight conversion, data reading and splitting, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.engine.out_of_scope import out_of_scope_rows
from edge_agent.toolkit.train.augment import recombined_texts
from edge_agent.toolkit.train.data import DataError, length_batches, read_labelled, split_indices
from edge_agent.toolkit.train.metrics import multi_label_report, single_label_report


def _tiny_bert(num_labels: int = 3):  # type: ignore[no-untyped-def]
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=num_labels,
        max_position_embeddings=40,
    )
    return BertForSequenceClassification(config).eval()


def test_groups_one_reproduces_bert_exactly() -> None:
    import torch

    from edge_agent.toolkit.train.minilm import squeezebert_from_bert

    bert = _tiny_bert()
    student = squeezebert_from_bert(bert, groups=1).eval()
    ids = torch.randint(5, 120, (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    with torch.no_grad():
        a = bert(input_ids=ids, attention_mask=mask).logits
        b = student(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_grouped_init_keeps_the_diagonal_blocks() -> None:
    import torch

    from edge_agent.toolkit.train.minilm import block_diagonal, squeezebert_from_bert

    dense = torch.arange(8 * 4, dtype=torch.float32).reshape(8, 4)
    grouped = block_diagonal(dense, 2)
    assert grouped.shape == (8, 2, 1)
    assert torch.equal(grouped[:4, :, 0], dense[:4, :2])
    assert torch.equal(grouped[4:, :, 0], dense[4:, 2:])
    bert = _tiny_bert()
    student = squeezebert_from_bert(bert, groups=4)
    query = student.transformer.encoder.layers[0].attention.query.weight
    assert query.shape == (32, 8, 1)
    source = bert.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(query[8:16, :, 0], source[8:16, 8:16])


def test_a_student_from_an_encoder_has_its_body_and_the_teachers_head(tmp_path: Path) -> None:
    import torch

    from edge_agent.toolkit.export.graph import POOLING_KEY
    from edge_agent.toolkit.train.minilm import squeezebert_from_bert, squeezebert_from_encoder
    from edge_agent.toolkit.train.query_pooling import use_query_pooling

    teacher = _tiny_bert(num_labels=3)
    teacher.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    teacher.config.label2id = {v: k for k, v in teacher.config.id2label.items()}
    encoder = squeezebert_from_bert(_tiny_bert(num_labels=2), groups=4)
    with torch.no_grad():  # _tiny_bert is seeded: shift every weight away from the teacher's
        for weight in encoder.parameters():
            weight.add_(1.0)
    use_query_pooling(encoder)
    encoder.save_pretrained(str(tmp_path))

    student = squeezebert_from_encoder(tmp_path, teacher)

    assert not hasattr(student.config, POOLING_KEY)  # reads the first token, as classifiers do
    assert student.config.id2label == teacher.config.id2label
    body, source = student.transformer.state_dict(), encoder.transformer.state_dict()
    for key, value in source.items():
        if not key.startswith("pooler."):
            assert torch.equal(body[key], value), key
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert torch.equal(student.transformer.pooler.dense.bias, teacher.bert.pooler.dense.bias)


def test_fitted_grouping_reproduces_dense_layers_better_than_diagonal_blocks() -> None:
    import torch

    from edge_agent.toolkit.train.grouping import fit_grouped, input_moments, moment_key
    from edge_agent.toolkit.train.minilm import block_diagonal

    # Correlated inputs, as real activations are: 16 channels driven by 4 sources.
    torch.manual_seed(1)
    x = torch.randn(4000, 4) @ torch.randn(4, 16) + 0.1 * torch.randn(4000, 16) + 0.5
    weight, bias = torch.randn(8, 16), torch.randn(8)
    dense = x @ weight.T + bias
    augmented = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    moments = (augmented.T @ augmented / len(x)).float()

    def grouped_error(grouped: torch.Tensor, grouped_bias: torch.Tensor) -> float:
        groups = 16 // grouped.shape[1]
        blocks = grouped[:, :, 0].reshape(groups, 8 // groups, 16 // groups)
        width = 16 // groups
        out = torch.cat(
            [x[:, g * width : (g + 1) * width] @ blocks[g].T for g in range(groups)], dim=1
        )
        return float(((out + grouped_bias - dense) ** 2).mean())

    fitted = fit_grouped(weight, bias, moments, groups=2)
    assert fitted[0].shape == (8, 8, 1)
    assert grouped_error(*fitted) < 0.1 * grouped_error(block_diagonal(weight, 2), bias)
    # One group sees every input: the fit reproduces the dense layer.
    assert grouped_error(*fit_grouped(weight, bias, moments, groups=1)) < 1e-3 * float(dense.var())

    bert = _tiny_bert()
    ids = [[int(t) for t in torch.randint(5, 120, (n,))] for n in (5, 9, 12, 3)]
    moments_by_layer = input_moments(bert, ids, batch_size=2)
    assert set(moments_by_layer) == {
        moment_key(i, name) for i in range(2) for name in ("attention", "intermediate", "output")
    }
    attention = moments_by_layer[moment_key(0, "attention")]
    assert attention.shape == (33, 33) and float(attention[-1, -1]) == pytest.approx(1.0)


def test_fitted_student_is_closer_to_the_teacher_than_diagonal_blocks() -> None:
    import torch

    from edge_agent.toolkit.train.minilm import squeezebert_from_bert

    bert = _tiny_bert()
    ids = torch.randint(5, 120, (64, 10))
    calibration = [[int(t) for t in row] for row in ids[:48]]
    blocks = squeezebert_from_bert(bert, groups=4).eval()
    fitted = squeezebert_from_bert(bert, groups=4, calibration_ids=calibration).eval()
    with torch.no_grad():
        # hidden states of unseen rows: the grouped layers' own job, before the classifier
        target = bert(input_ids=ids[48:], output_hidden_states=True).hidden_states[-1]
        errors = [
            float(
                (
                    (m(input_ids=ids[48:], output_hidden_states=True).hidden_states[-1] - target)
                    ** 2
                ).mean()
            )
            for m in (blocks, fitted)
        ]
    assert errors[1] < errors[0]


def test_transfer_rows_train_the_student_through_the_teacher_alone() -> None:
    import torch

    from edge_agent.toolkit.train.distil import RecipeOptions, run_recipe
    from edge_agent.toolkit.train.fit import Encoded, FitOptions

    teacher = _tiny_bert(num_labels=2)
    labelled = Encoded(ids=[[5 + i, 9, 11] for i in range(8)], targets=[i % 2 for i in range(8)])
    # longer than every labelled row, so length bucketing gives batches of transfer rows only
    transfer = [[20 + i, 30, 31, 32, 33, 34, 35] for i in range(8)]
    options = RecipeOptions(
        teacher=FitOptions(epochs=1, batch_size=4, progress=False),
        student=FitOptions(
            epochs=2, batch_size=4, kd_alpha=0.7, kd_hidden_weight=1.0, progress=False
        ),
        calibration_rows=8,
    )
    recipe: dict[str, Any] = {
        "teacher": teacher,
        "train": labelled,
        "validation": labelled,
        "held_out": None,
        "options": options,
        "log": lambda entry: None,
        "teacher_trained": True,
        "transfer": transfer,
    }
    result = run_recipe(multi_label=False, **recipe)
    weights = [p for p in result.student.parameters() if p.requires_grad]
    assert all(bool(torch.isfinite(p).all()) for p in weights)
    assert [s.name for s in result.steps] == ["dense_teacher", "grouped_init", "distilled_student"]
    with pytest.raises(ValueError, match="single-label distillation"):
        run_recipe(multi_label=True, **recipe)


def test_read_formats_and_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("sentence\tlabel\nfine day\t1\nbad day\t0\n", encoding="utf-8")
    rows = read_labelled(tsv, text_column="sentence")
    assert rows.texts == ("fine day", "bad day") and rows.labels == (("1",), ("0",))
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(json.dumps({"text": "x", "label": ["a", "b"]}) + "\n", encoding="utf-8")
    assert read_labelled(jsonl, multi_label=True).labels == (("a", "b"),)
    csv_file = tmp_path / "c.csv"
    csv_file.write_text('text,label\n"x, y","a|b"\n', encoding="utf-8")
    assert read_labelled(csv_file, multi_label=True, label_separator="|").labels == (("a", "b"),)
    with pytest.raises(DataError, match="expected one label"):
        read_labelled(jsonl)
    jsonl.write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"b.jsonl:1: needs keys"):
        read_labelled(jsonl)


def test_split_is_stratified_and_reproducible() -> None:
    labels = [("a",)] * 90 + [("b",)] * 10
    first = split_indices(labels, [0.2], seed=7)
    assert first == split_indices(labels, [0.2], seed=7)
    held, rest = first
    assert sorted(held + rest) == list(range(100))
    assert sum(1 for i in held if labels[i] == ("b",)) == 2


def test_recombined_texts_mix_words_of_the_training_texts_reproducibly() -> None:
    texts = ["what is my credit score", "book a flight to paris", "hi", "set an alarm for six"]
    made = recombined_texts(texts, 200, seed=3)
    assert made == recombined_texts(texts, 200, seed=3)
    assert made != recombined_texts(texts, 200, seed=4)
    assert len(made) == 200
    vocabulary = {word for text in texts for word in text.split()}
    assert all(text and set(text.split()) <= vocabulary for text in made)
    # mostly new texts, and some mixing two sources (each source's words are distinct here)
    assert sum(text not in texts for text in made) > 150
    sources = [{i for i, t in enumerate(texts) if w in t.split()} for w in vocabulary]
    owner = {w: s.pop() for w, s in zip(vocabulary, sources, strict=True) if len(s) == 1}
    assert any(len({owner[w] for w in text.split() if w in owner}) == 2 for text in made)
    with pytest.raises(ValueError, match="two words"):
        recombined_texts(["hi", "yo"], 3, seed=0)


def test_oos_threshold_rejects_the_budgeted_share_of_in_scope_queries() -> None:
    from recipes.tasks import INTENT_IN_SCOPE_REJECTED, OOS, choose_threshold, oos_operating_point

    labels = ("alarm", "weather", OOS)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 400)
    logits = rng.normal(0, 1, (400, 3))
    # in-scope rows confidently right, out-of-scope rows unsure (the rule's premise)
    margins = np.where(targets == 2, rng.uniform(0, 1, 400), rng.uniform(3, 8, 400))
    logits[np.arange(400), targets] += margins
    in_scope = targets != 2
    for score in ("probability", "energy"):
        chosen = choose_threshold(logits, targets, labels, score)
        for threshold, within_budget in ((chosen, True), (chosen + 1e-6, False)):
            out = out_of_scope_rows(logits, labels, OOS, score, threshold) | (
                logits.argmax(axis=1) == 2
            )
            assert bool(out[in_scope].mean() <= INTENT_IN_SCOPE_REJECTED) == within_budget
        assert (
            oos_operating_point(logits, targets, labels, chosen, score)["oos_recall"]
            > (oos_operating_point(logits, targets, labels, float("-inf"), score)["oos_recall"])
        )


def test_length_batches_cover_every_row_once() -> None:
    lengths = [5, 3, 9, 1, 7, 2, 8]
    for seed in (None, 1):
        batches = length_batches(lengths, 3, seed=seed)
        assert sorted(i for b in batches for i in b) == list(range(7))
    assert length_batches(lengths, 3, seed=None)[0] == [3, 5, 1]


def test_reports() -> None:
    report = single_label_report([0, 1, 1, 2], [0, 1, 2, 2], ["x", "y", "z"])
    assert report.accuracy == 0.75
    assert report.confusions == (("z", "y", 1),)
    by_label = {c.label: c for c in report.per_class}
    assert by_label["y"].precision == 0.5 and by_label["z"].recall == 0.5
    multi = multi_label_report(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]), ["p", "q"])
    assert multi.accuracy == 0.5 and multi.confusions == ()
    assert multi.micro_f1 == pytest.approx(0.8)


def test_macro_recall_weighs_every_class_alike() -> None:
    # the frequent class is always right, the rare one never: accuracy 0.8, macro recall 0.5
    report = single_label_report([0, 0, 0, 0, 0], [0, 0, 0, 0, 1], ["neutral", "negative"])
    assert report.accuracy == pytest.approx(0.8)
    assert report.macro_recall == pytest.approx(0.5)


def test_tweeteval_escapes_become_the_characters_a_device_receives() -> None:
    from recipes.tasks import unescape_tweet

    assert (
        unescape_tweet(r"it\u2019s fine\u002c really \ud83d\ude00")
        == "it\u2019s fine, really \U0001f600"
    )
    assert unescape_tweet("no escapes at all ") == "no escapes at all "


def _checkpoint_with_unused_rows(source: Path) -> dict[str, int]:
    """A tiny SqueezeBERT checkpoint whose vocabulary starts with two `[unusedN]` rows, as
    MiniLM's does; returns that vocabulary."""
    import torch
    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.minilm import squeezebert_config
    from tests.support.bundles import build_tiny_tokenizer

    spec = json.loads(build_tiny_tokenizer().to_str())
    vocab = spec["model"]["vocab"]
    shifted = {"[PAD]": 0, "[unused0]": 1, "[unused1]": 2}
    shifted.update({t: i + 2 for t, i in vocab.items() if t != "[PAD]"})
    spec["model"]["vocab"] = shifted
    for special in spec["post_processor"]["special_tokens"].values():
        special["ids"] = [i + 2 for i in special["ids"]]
    source.mkdir()
    (source / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    torch.manual_seed(0)
    config = squeezebert_config(
        num_labels=2, hidden=32, layers=1, heads=4, intermediate=64, vocab_size=len(shifted)
    )
    SqueezeBertForSequenceClassification(config).save_pretrained(str(source))
    return shifted


def test_pruning_unused_vocabulary_keeps_predictions(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import SqueezeBertForSequenceClassification

    from edge_agent.toolkit.train.vocab import prune_unused_vocab

    source = tmp_path / "source"
    shifted = _checkpoint_with_unused_rows(source)

    assert prune_unused_vocab(source, tmp_path / "pruned") == 2
    texts = ["the movie was great fun", "smoke alarm [unused0] in the garage"]
    logits = []
    for folder in (source, tmp_path / "pruned"):
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        model = SqueezeBertForSequenceClassification.from_pretrained(str(folder)).eval()
        with torch.no_grad():
            logits.append(
                [
                    model(input_ids=torch.tensor([e.ids])).logits
                    for e in tokenizer.encode_batch(texts)
                ]
            )
    for before, after in zip(*logits, strict=True):
        assert torch.equal(before, after)
    pruned = Tokenizer.from_file(str(tmp_path / "pruned" / "tokenizer.json"))
    assert pruned.get_vocab_size() == len(shifted) - 2
    assert pruned.encode("hello").ids[0] == shifted["[CLS]"] - 2


def test_the_deployed_graph_is_measured_with_the_deployed_tokenizer(tmp_path: Path) -> None:
    """`model train` once measured the pruned graph with the training tokenizer: every id
    shifted, and the last pieces past the end of the embedding (onnxruntime: "Gather ...
    indices element out of data bounds"), a crash after the whole training run."""
    from tokenizers import Tokenizer

    from edge_agent.toolkit.train.bundle import deploy_checkpoint, export_graphs, graph_logits

    source = tmp_path / "source"
    shifted = _checkpoint_with_unused_rows(source)
    deployable = deploy_checkpoint(source, tmp_path / "work", max_seq_len=32)
    last_piece = max(shifted, key=shifted.__getitem__)  # the highest id, renumbered by pruning
    text = f"door {last_piece}"
    training = Tokenizer.from_file(str(source / "tokenizer.json"))
    assert max(training.encode(text).ids) >= deployable.tokenizer.get_vocab_size()
    assert max(deployable.tokenizer.encode(text).ids) < deployable.tokenizer.get_vocab_size()
    assert deployable.tokenizer_file.is_file()
    fp32, int8 = export_graphs(
        deployable, tmp_path / "graphs", calibration_texts=["door open", text], max_seq_len=32
    )
    for graph in (fp32, int8):
        logits = graph_logits(graph, deployable.tokenizer, [text], max_seq_len=32, threads=1)
        assert logits.shape == (1, 2) and np.isfinite(logits).all()


def test_a_cached_teacher_gives_the_models_logits_for_any_batch_of_its_rows(
    tmp_path: Path,
) -> None:
    import torch

    from edge_agent.toolkit.train.cached_teacher import cached_logits, cached_teacher
    from edge_agent.toolkit.train.fit import pad_batch

    model = _tiny_bert()
    generator = np.random.default_rng(0)
    rows = [[101, *generator.integers(5, 120, n).tolist(), 102] for n in (3, 9, 1, 14, 6)]
    logits = cached_logits(lambda: model, rows, tmp_path)
    teacher = cached_teacher(rows, logits)
    input_ids, mask = pad_batch([rows[3], rows[0], rows[2]], torch.device("cpu"))
    with torch.no_grad():
        live = model(input_ids=input_ids, attention_mask=mask).logits
    assert torch.allclose(teacher(input_ids=input_ids, attention_mask=mask).logits, live, atol=1e-5)

    # saved for these rows: read back, not recomputed; other rows: computed afresh
    def other_model() -> Any:
        return _tiny_bert(num_labels=2)

    assert np.array_equal(cached_logits(other_model, rows, tmp_path), logits)
    assert cached_logits(other_model, rows[:4], tmp_path).shape == (4, 2)


def test_a_combined_teacher_answers_with_one_model_and_thinks_with_the_other() -> None:
    import torch

    from edge_agent.toolkit.train.cached_teacher import logits_and_hidden

    answers, layers = _tiny_bert(num_labels=2), _tiny_bert(num_labels=3)
    ids = torch.randint(5, 120, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        combined = logits_and_hidden(answers, layers)(
            input_ids=ids, attention_mask=mask, output_hidden_states=True
        )
        expected_logits = answers(input_ids=ids, attention_mask=mask).logits
        expected_hidden = layers(
            input_ids=ids, attention_mask=mask, output_hidden_states=True
        ).hidden_states
    assert torch.equal(combined.logits, expected_logits)
    assert all(
        torch.equal(a, b) for a, b in zip(combined.hidden_states, expected_hidden, strict=True)
    )


def test_a_combined_teacher_can_answer_with_the_mean_of_both_models() -> None:
    import torch

    from edge_agent.toolkit.train.cached_teacher import logits_and_hidden

    answers, layers = _tiny_bert(num_labels=3), _tiny_bert(num_labels=3)
    ids = torch.randint(5, 120, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        first = answers(input_ids=ids, attention_mask=mask).logits
        second = layers(input_ids=ids, attention_mask=mask).logits
        for output_hidden_states in (False, True):
            mixed = logits_and_hidden(answers, layers, share=0.25)(
                input_ids=ids, attention_mask=mask, output_hidden_states=output_hidden_states
            )
            assert torch.allclose(mixed.logits, 0.25 * first + 0.75 * second, atol=1e-6)
            assert (mixed.hidden_states is not None) == output_hidden_states
    with pytest.raises(ValueError, match="share"):
        logits_and_hidden(answers, layers, share=1.5)
