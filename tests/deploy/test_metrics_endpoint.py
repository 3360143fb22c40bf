"""The Prometheus endpoint: valid text format (parsed back here) and a real HTTP scrape."""

from __future__ import annotations

import math
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.telemetry.metrics import CONTENT_TYPE, MetricsServer, render_prometheus
from edge_agent.telemetry.stats import LATENCY_BUCKETS_MS, Stats

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Family:
    kind: str
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse_exposition(text: str) -> dict[str, Family]:
    """A strict reader of text format 0.0.4; raises AssertionError on anything malformed."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert _NAME.fullmatch(name), line
            assert name not in helps, f"second HELP for {name}"
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert _NAME.fullmatch(name), line
            assert kind in _TYPES, line
            assert name not in families, f"second TYPE for {name}"
            families[name] = Family(kind=kind, help=helps.get(name, ""))
        elif line.startswith("#"):
            continue
        else:
            sample, labels, value = _parse_sample(line)
            families[_family_of(sample, families)].samples.append((sample, labels, value))
    return families


def _family_of(sample: str, families: dict[str, Family]) -> str:
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and families.get(base, Family("")).kind in {"histogram", "summary"}:
            return base
    raise AssertionError(f"sample {sample} has no TYPE line before it")


def _parse_sample(line: str) -> tuple[str, dict[str, str], float]:
    match = _NAME.match(line)
    assert match, line
    name, rest = match.group(0), line[match.end() :]
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        rest = rest[1:]
        while not rest.startswith("}"):
            key_match = _LABEL_NAME.match(rest)
            assert key_match, line
            key = key_match.group(0)
            rest = rest[key_match.end() :]
            assert rest.startswith('="'), line
            rest = rest[2:]
            value_chars: list[str] = []
            while not rest.startswith('"'):
                assert rest, f"unterminated label value: {line}"
                if rest[0] == "\\":
                    escaped = {"\\": "\\", '"': '"', "n": "\n"}.get(rest[1:2])
                    assert escaped is not None, f"bad escape: {line}"
                    value_chars.append(escaped)
                    rest = rest[2:]
                else:
                    assert rest[0] != "\n", line
                    value_chars.append(rest[0])
                    rest = rest[1:]
            assert key not in labels, f"duplicate label {key}: {line}"
            labels[key] = "".join(value_chars)
            rest = rest[1:]
            if rest.startswith(","):
                rest = rest[1:]
        rest = rest[1:]
    assert rest.startswith(" "), line
    fields = rest.split()
    assert len(fields) in (1, 2), line  # value and an optional timestamp
    return name, labels, float(fields[0])  # float() accepts +Inf, -Inf, NaN as Prometheus does


def _busy_stats() -> Stats:
    stats = Stats()
    for _ in range(5):
        stats.message_received()
    stats.result_published("chat/+/text", "labelled", 0.4)
    stats.result_published("chat/+/text", "labelled", 3.0)
    stats.result_published("chat/+/text", "labelled", 7000.0)  # beyond the last bucket
    stats.result_published("chat/+/text", "invalid_utf8", None)
    stats.result_published('odd "route"\\with\nnewline', "empty_text", None)
    stats.batch_done(2)
    stats.batch_done(1)
    stats.set_queue_depth(7)
    stats.set_connected(True)
    stats.set_model("sentiment", "1.2.0")
    stats.set_model("intent", "0.3.1")
    stats.stage_took("infer", 0.7, messages=2)  # a batch of two, 0.7 ms each
    stats.stage_took("queue", 2000.0)  # beyond the last stage bucket
    return stats


def _value(family: Family, **labels: str) -> float:
    values = [v for _, sample_labels, v in family.samples if sample_labels == labels]
    assert len(values) == 1, (labels, family.samples)
    return values[0]


def test_stage_histograms_are_cumulative_per_stage() -> None:
    families = parse_exposition(render_prometheus(_busy_stats().snapshot()))
    stages = families["edge_agent_stage_seconds"]
    assert stages.kind == "histogram"
    assert _value(stages, stage="infer", le="0.0005") == 0
    assert _value(stages, stage="infer", le="0.001") == 2
    assert _value(stages, stage="infer", le="+Inf") == 2
    assert _value(stages, stage="queue", le="1") == 0  # 2 s: only in +Inf
    assert _value(stages, stage="queue", le="+Inf") == 1
    assert {labels["stage"] for _, labels, _ in stages.samples} == {
        "queue",
        "prepare",
        "tokenize",
        "infer",
        "encode",
        "handoff",
        "puback",
    }


def test_rendered_text_parses_back_to_what_was_recorded() -> None:
    families = parse_exposition(render_prometheus(_busy_stats().snapshot()))

    assert _value(families["edge_agent_messages_received_total"]) == 5
    assert _value(families["edge_agent_messages_published_total"]) == 5
    messages = families["edge_agent_messages_total"]
    assert messages.kind == "counter"
    assert _value(messages, route="chat/+/text", outcome="labelled") == 3
    assert _value(messages, route="chat/+/text", outcome="invalid_utf8") == 1
    # Escaped on the way out, unescaped by the parser: the label survives intact.
    assert _value(messages, route='odd "route"\\with\nnewline', outcome="empty_text") == 1
    assert _value(families["edge_agent_queue_depth"]) == 7
    assert _value(families["edge_agent_broker_connected"]) == 1
    assert _value(families["edge_agent_batches_total"], size="2") == 1
    models = families["edge_agent_model_info"]
    assert models.kind == "gauge"
    assert _value(models, name="sentiment", version="1.2.0") == 1
    assert _value(models, name="intent", version="0.3.1") == 1
    assert all(name.startswith("edge_agent_") for name in families)
    assert all(family.help for family in families.values())


def test_latency_histogram_is_cumulative_in_seconds() -> None:
    histogram = parse_exposition(render_prometheus(_busy_stats().snapshot()))[
        "edge_agent_message_latency_seconds"
    ]
    assert histogram.kind == "histogram"
    buckets = [
        (labels["le"], v) for name, labels, v in histogram.samples if name.endswith("_bucket")
    ]
    bounds = [float(le) for le, _ in buckets]
    assert bounds[:-1] == [bound / 1000 for bound in LATENCY_BUCKETS_MS]
    assert buckets[-1][0] == "+Inf" and math.isinf(bounds[-1])
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    by_bound = dict(zip(bounds, counts, strict=True))
    assert by_bound[0.001] == 1  # 0.4 ms
    assert by_bound[0.005] == 2  # + 3 ms
    assert by_bound[5.0] == 2  # 7 s is past the last finite bucket
    assert by_bound[math.inf] == 3
    count = next(v for name, _, v in histogram.samples if name.endswith("_count"))
    total = next(v for name, _, v in histogram.samples if name.endswith("_sum"))
    assert count == 3
    assert total == pytest.approx((0.4 + 3.0 + 7000.0) / 1000)


def test_fresh_agent_renders_valid_empty_families() -> None:
    families = parse_exposition(render_prometheus(Stats().snapshot()))
    assert _value(families["edge_agent_broker_connected"]) == 0
    assert families["edge_agent_model_info"].samples == []
    assert families["edge_agent_message_latency_seconds"].samples[-1][2] == 0  # _count


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_server_answers_a_real_scrape_with_live_numbers() -> None:
    stats = _busy_stats()
    server = MetricsServer("127.0.0.1", 0, lambda: render_prometheus(stats.snapshot()))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, content_type, body = _get(base + "/metrics")
        assert status == 200
        assert content_type == CONTENT_TYPE
        assert _value(parse_exposition(body)["edge_agent_queue_depth"]) == 7

        stats.set_queue_depth(2)  # each scrape renders afresh
        _, _, body = _get(base + "/metrics")
        assert _value(parse_exposition(body)["edge_agent_queue_depth"]) == 2

        status, _, _ = _get(base + "/")
        assert status == 404
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
        pass


def test_server_survives_a_failing_render() -> None:
    calls: list[int] = []

    def render() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("snapshot failed")
        return render_prometheus(Stats().snapshot())

    server = MetricsServer("127.0.0.1", 0, render)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert _get(url)[0] == 500
        assert _get(url)[0] == 200
    finally:
        server.stop()


def test_busy_port_fails_at_start() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = MetricsServer("127.0.0.1", holder.getsockname()[1], lambda: "")
        with pytest.raises(OSError):
            server.start()


def test_running_agent_serves_its_numbers(tmp_path: Path) -> None:
    """metrics.enabled in the config: the real agent serves /metrics on localhost, with its
    model and broker state and the messages it labelled."""
    agent_process = pytest.importorskip(
        "tests.support.agent_process", reason="pending: needs the daemon (issue 'Agent core')"
    )
    broker_support = pytest.importorskip("tests.support.broker")
    mqtt_client = pytest.importorskip("tests.support.mqtt_client")
    tiny_bundle = pytest.importorskip("tests.support.bundles")
    broker = broker_support.Broker(tmp_path / "broker").start()
    tiny_bundle.build_tiny_bundle(tmp_path / "models", name="tiny")
    port = broker_support.free_port()
    config = agent_process.write_config(
        tmp_path / "agent.yaml",
        broker_port=broker.port,
        models_dir=tmp_path / "models",
        client_id="metrics",
        metrics={"enabled": True, "host": "127.0.0.1", "port": port},
    )
    client = mqtt_client.TestClient(broker.host, broker.port)
    agent = agent_process.AgentProcess(config, tmp_path / "agent.log").start()
    try:
        client.subscribe("edge-agent/metrics/status", "metrics/in/a/label")
        agent.wait_online(client, "edge-agent/metrics/status")
        for index in range(3):
            client.publish("metrics/in/a", f'{{"id": "{index}", "text": "the door is open"}}')
        deadline = time.monotonic() + 30
        while len(client.messages("metrics/in/a/label")) < 3:
            assert time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.05)

        status, content_type, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        families = parse_exposition(body)
        assert _value(families["edge_agent_broker_connected"]) == 1
        assert _value(families["edge_agent_model_info"], name="tiny", version="1.0.0") == 1
        labelled = _value(
            families["edge_agent_messages_total"], route="metrics/in/+", outcome="labelled"
        )
        assert labelled == 3
        latency = families["edge_agent_message_latency_seconds"]
        assert next(v for n, _, v in latency.samples if n.endswith("_count")) == 3
    finally:
        agent.stop()
        client.close()
        broker.kill()


def test_a_slow_client_neither_blocks_scrapes_nor_holds_the_server() -> None:
    """Before: one thread served every connection, so a client sending a byte every 4 s
    (under the 5 s read timeout) held the endpoint forever and made shutdown hang."""
    server = MetricsServer(
        "127.0.0.1", 0, lambda: render_prometheus(Stats().snapshot()), request_deadline_s=1.5
    )
    server.start()
    slow = socket.create_connection(("127.0.0.1", server.port), 2)
    try:
        slow.sendall(b"GET /met")  # and then a byte now and then, never the end of the request
        started = time.monotonic()
        status, _, _ = _get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and time.monotonic() - started < 1.0  # not queued behind it
        cut = None
        for _ in range(40):
            try:
                slow.sendall(b"r")
                if slow.recv(1, socket.MSG_DONTWAIT) == b"":
                    cut = time.monotonic() - started
                    break
            except BlockingIOError:
                pass
            except OSError:
                cut = time.monotonic() - started
                break
            time.sleep(0.1)
        assert cut is not None and cut < 3.0, "the slow connection was never cut"
    finally:
        slow.close()
        stopping = time.monotonic()
        server.stop()
        assert time.monotonic() - stopping < 2.0
