"""Bad input fuzz through the real broker and agent: 10,000 hypothesis-generated payloads
(random bytes, broken UTF-8, huge strings, deep JSON, wrong types, control characters,
emoji, right-to-left text) interleaved with valid messages.

Every payload goes to its own topic, so its answer is found by topic whatever the payload
says: a label on `<topic>/label` or an error result (carrying `topic`) on the errors topic.
Valid messages are checked against the same bundle's engine run in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edge_agent.bundle.versions import resolve_bundle
from edge_agent.engine.classifier import load_classifier
from tests.support.agent_process import AgentMaker
from tests.support.broker import Broker
from tests.support.bundles import WORDS
from tests.support.traffic import Collector, Publisher

FUZZ_COUNT = 10_000
VALID_EVERY = 3  # one valid message after every 3 fuzzed ones
MAX_PAYLOAD_BYTES = 20_000
# Labels are compared in fp32, where batching and padding change scores only by float
# rounding (dynamic INT8 quantizes per batch, so its near-ties depend on batch-mates:
# that is the engine's business, tested there). Only exact near-ties may differ.
TIE_MARGIN = 1e-4

RTL = st.characters(min_codepoint=0x0590, max_codepoint=0x06FF)  # Hebrew, Arabic
EMOJI = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
CONTROL = st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Co"])
ANY_TEXT = st.text(st.one_of(st.characters(), RTL, EMOJI, CONTROL), max_size=100)


def _utf8(text: str) -> bytes:
    """Lone surrogates (hypothesis generates them) become invalid UTF-8: more fuzz."""
    return text.encode("utf-8", "surrogatepass")


def _deep(depth: int, kind: str) -> bytes:
    if kind == "object":
        return b'{"text":' * depth + b'"deep"' + b"}" * depth
    return b'{"text": ' + b"[" * depth + b"]" * depth + b"}"


def _broken_utf8(text: str, junk: bytes, at: int) -> bytes:
    data = _utf8(text)
    cut = at % (len(data) + 1)
    return data[:cut] + junk + data[cut:]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)

PAYLOADS = st.one_of(
    st.binary(max_size=400),
    st.builds(
        _broken_utf8,
        ANY_TEXT,
        st.sampled_from([b"\xc3", b"\xff", b"\xed\xa0\x80", b"\xf0\x9f", b"\x80\x80"]),
        st.integers(0, 400),
    ),
    ANY_TEXT.map(_utf8),
    st.builds(
        lambda n, c: c * n, st.integers(5_000, 30_000), st.sampled_from(["x", "é", "😀", "ש"])
    ).map(str.encode),
    st.builds(_deep, st.integers(1, 5_000), st.sampled_from(["object", "array"])),
    st.fixed_dictionaries({"text": JSON_VALUES}).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"text": ANY_TEXT, "id": JSON_VALUES}).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda s: _utf8("{" + s), ANY_TEXT),
)

VALID_TEXTS = st.builds(
    lambda words, tail: " ".join(words) + tail,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    st.one_of(st.just(""), st.text(st.one_of(RTL, EMOJI), max_size=5).map(lambda t: " " + t)),
)


def generate(strategy: st.SearchStrategy[bytes], count: int) -> list[bytes]:
    found: list[bytes] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(payload: bytes) -> None:
        found.append(payload)

    collect()
    return found


@pytest.mark.slow
def test_ten_thousand_bad_payloads_each_answered_valid_ones_labelled_right(
    broker: Broker, make_agent: AgentMaker, chaos_models: Path
) -> None:
    started = time.monotonic()
    fuzzed = generate(PAYLOADS, FUZZ_COUNT)
    texts = [payload.decode() for payload in generate(VALID_TEXTS.map(str.encode), 500)]
    generated_s = time.monotonic() - started
    assert len(fuzzed) >= FUZZ_COUNT * 0.95  # hypothesis may skip a few duplicates

    name = "fuzz"
    agent = make_agent(
        broker.port,
        client_id=name,
        models={"precision": "fp32"},
        limits={"max_payload_bytes": MAX_PAYLOAD_BYTES},
    )
    status, errors = f"edge-agent/{name}/status", f"edge-agent/{name}/errors"
    collector = Collector(broker.host, broker.port, f"{name}/in/+/label", status, errors)
    publisher = Publisher(broker.host, broker.port)
    valid: dict[str, str] = {}  # topic -> text
    order: list[str] = []
    try:
        collector.wait_online(status)
        next_valid = 0
        for index, payload in enumerate(fuzzed):
            topic = f"{name}/in/f{index}"
            publisher.publish(topic, payload, topic)
            order.append(topic)
            if index % VALID_EVERY == VALID_EVERY - 1:
                text = texts[next_valid % len(texts)]
                next_valid += 1
                topic = f"{name}/in/v{index}"
                valid[topic] = text
                publisher.publish(topic, json.dumps({"text": text, "id": f"v{index}"}), topic)
                order.append(topic)
            if index % 500 == 499:
                time.sleep(0.05)
        deadline = time.monotonic() + 120
        answered: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline:
            for result in collector.snapshot():
                answer_topic = result.body.get("topic")
                if isinstance(answer_topic, str) and answer_topic not in answered:
                    answered[answer_topic] = result.body
            if len(answered) >= len(order):
                break
            time.sleep(0.2)
        unanswered = [topic for topic in order if topic not in answered]
        assert agent.process is not None and agent.process.poll() is None, agent.log_tail()
        assert not unanswered, f"{len(unanswered)} payloads got no answer, e.g. {unanswered[:5]}"
        assert not any(line["event"] == "worker_died" for line in agent.log_lines())

        codes: dict[str, int] = {}
        for topic in order:
            body = answered[topic]
            error = body.get("error")
            key = str(error["code"]) if isinstance(error, dict) else "labelled"
            codes[key] = codes.get(key, 0) + 1

        classifier = load_classifier(resolve_bundle(chaos_models, "tiny"), precision="fp32")
        topics = list(valid)
        expected = classifier.classify([valid[topic] for topic in topics], top_k=2)
        ties = wrong = 0
        for topic, prediction in zip(topics, expected, strict=True):
            body = answered[topic]
            assert "label" in body, f"valid message {valid[topic]!r} got {body}"
            if body["label"] != prediction.label:
                margin = prediction.top_k[0].score - prediction.top_k[1].score
                if margin < TIE_MARGIN:
                    ties += 1
                else:
                    wrong += 1
        total_s = time.monotonic() - started
        print(
            f"\nfuzz: {len(fuzzed)} fuzzed + {len(valid)} valid payloads, all answered; "
            f"outcomes {dict(sorted(codes.items()))}; valid labels: {len(valid) - ties - wrong} "
            f"match the in-process engine, {ties} near-ties differ; generation "
            f"{generated_s:.1f} s, total {total_s:.1f} s"
        )
        assert wrong == 0
        # Bad input is an error result, never a processing failure retried into a dead letter.
        assert "poison" not in codes
        assert ties <= len(valid) // 100
        assert agent.stop() == 0
    finally:
        collector.close()
        publisher.close()
