"""Prometheus text endpoint: the agent's counters for a fleet operator's scraper.

Off by default and bound to 127.0.0.1 (config `metrics`): the numbers say what a device
processes, which is nobody else's business unless the operator opens it. The stdlib HTTP
server in a daemon thread is enough for one scrape every few seconds and adds no dependency.

`render_prometheus` is pure (snapshot in, text out); `MetricsServer` is the thin I/O edge.
Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from edge_agent import __version__
from edge_agent.telemetry.logs import get_logger
from edge_agent.telemetry.stats import LATENCY_BUCKETS_MS, STAGE_BUCKETS_MS, StatsSnapshot

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH: Final = "/metrics"
# A scraper that opens a connection and sends nothing must not hold the server forever:
# each read waits at most REQUEST_TIMEOUT_S, and a whole connection lives at most
# REQUEST_DEADLINE_S (a client sending one byte every few seconds never trips the first).
REQUEST_TIMEOUT_S: Final = 5.0
REQUEST_DEADLINE_S: Final = 10.0
MAX_CONNECTIONS: Final = 8  # a scraper needs one; more are turned away at once

_log = get_logger(__name__)


def render_prometheus(snapshot: StatsSnapshot) -> str:
    """The snapshot in Prometheus text format; latencies in seconds, as Prometheus expects."""
    lines: list[str] = []
    _family(
        lines, "edge_agent_build_info", "gauge", "Agent version.", [({"version": __version__}, 1)]
    )
    _family(
        lines,
        "edge_agent_messages_received_total",
        "counter",
        "Messages received from the broker.",
        [({}, snapshot.messages_in)],
    )
    _family(
        lines,
        "edge_agent_messages_published_total",
        "counter",
        "Results and error results published.",
        [({}, snapshot.messages_out)],
    )
    _family(
        lines,
        "edge_agent_messages_total",
        "counter",
        'Finished messages by route (subscription filter) and outcome ("labelled" or an '
        "error code).",
        [
            ({"route": route, "outcome": outcome}, count)
            for (route, outcome), count in sorted(snapshot.outcomes.items())
        ],
    )
    _histogram(lines, snapshot)
    _stage_histogram(lines, snapshot)
    _family(
        lines,
        "edge_agent_batches_total",
        "counter",
        "Inference batches run, by batch size.",
        [({"size": str(size)}, count) for size, count in sorted(snapshot.batch_sizes.items())],
    )
    _family(
        lines,
        "edge_agent_qos0_shed_total",
        "counter",
        "QoS 0 messages dropped because the inference queue was at its bound.",
        [({}, snapshot.shed_qos0)],
    )
    _family(
        lines,
        "edge_agent_queue_depth",
        "gauge",
        "Messages waiting for inference.",
        [({}, snapshot.queue_depth)],
    )
    _family(
        lines,
        "edge_agent_broker_connected",
        "gauge",
        "1 while the MQTT connection is up.",
        [({}, int(snapshot.connected))],
    )
    _family(
        lines,
        "edge_agent_model_info",
        "gauge",
        "Active model versions.",
        [
            ({"name": name, "version": version}, 1)
            for name, version in sorted(snapshot.models.items())
        ],
    )
    return "\n".join(lines) + "\n"


def _histogram(lines: list[str], snapshot: StatsSnapshot) -> None:
    name = "edge_agent_message_latency_seconds"
    lines.append(f"# HELP {name} Receive-to-publish latency of labelled messages.")
    lines.append(f"# TYPE {name} histogram")
    # StatsSnapshot keeps per-bucket counts; Prometheus buckets are cumulative.
    running = 0
    bounds = [_number(bound_ms / 1000) for bound_ms in LATENCY_BUCKETS_MS] + ["+Inf"]
    for bound, count in zip(bounds, snapshot.latency_bucket_counts, strict=True):
        running += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
    lines.append(f"{name}_sum {_number(snapshot.latency_sum_ms / 1000)}")
    lines.append(f"{name}_count {snapshot.latency_count}")


def _stage_histogram(lines: list[str], snapshot: StatsSnapshot) -> None:
    name = "edge_agent_stage_seconds"
    lines.append(
        f"# HELP {name} Time labelled messages spent in each stage of the agent "
        "(queue, prepare, tokenize, infer, encode, handoff, puback)."
    )
    lines.append(f"# TYPE {name} histogram")
    bounds = [_number(bound_ms / 1000) for bound_ms in STAGE_BUCKETS_MS] + ["+Inf"]
    for stage, figures in snapshot.stages.items():
        running = 0
        for bound, count in zip(bounds, figures.bucket_counts, strict=True):
            running += count
            lines.append(f'{name}_bucket{{stage="{stage}",le="{bound}"}} {running}')
        lines.append(f'{name}_sum{{stage="{stage}"}} {_number(figures.sum_ms / 1000)}')
        lines.append(f'{name}_count{{stage="{stage}"}} {figures.count}')


def _family(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[dict[str, str], float]],
) -> None:
    lines.append(f"# HELP {name} {_escape_help(help_text)}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lines.append(f"{name}{_labels(labels)} {_number(value)}")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    # Label values come from config and bundles (routes, model names): escape, never trust.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        # Cut the connection at the deadline, whatever the client is doing with it.
        self._deadline = threading.Timer(self.server.deadline_s, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):  # already closed
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(OSError):  # the deadline cut it: nothing left to flush
            super().finish()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self.send_error(404, "only /metrics is served here")
            return
        try:
            body = self.server.render().encode("utf-8")
        except Exception as error:  # a broken render must not kill the server thread
            _log.error("metrics_render_failed", error=repr(error))
            self.send_error(500, "metrics rendering failed")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The stdlib writes one stderr line per scrape; the agent's log stays for events.
        del format, args


class _Server(ThreadingHTTPServer):
    """One thread per connection, so a slow client cannot block a scrape; daemon threads that
    close() does not wait for, so a slow client cannot hold up the agent's shutdown."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, render: Callable[[], str], deadline_s: float) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.render = render
        self.deadline_s = deadline_s
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over MAX_CONNECTIONS: closed at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """Serves GET /metrics from `render()` on a daemon thread; start() binds, stop() closes."""

    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[], str],
        *,
        request_deadline_s: float = REQUEST_DEADLINE_S,
    ) -> None:
        self._host = host
        self._port = port
        self._render = render
        self._deadline_s = request_deadline_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); the configured one before start()."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve; raises OSError when the address is taken or not local."""
        if self._server is not None:
            return
        self._server = _Server(self._host, self._port, self._render, self._deadline_s)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        _log.info("metrics_serving", host=self._host, port=self.port, path=METRICS_PATH)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_S)
        self._server = None
        self._thread = None
