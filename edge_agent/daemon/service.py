"""The daemon's lifecycle, after uvicorn's server.py: startup, a ticking main loop, drain.

The parts arrive built (edge_agent/daemon/wiring.py); this module only runs them.

Threads:
- paho's network thread (edge_agent.mqtt.link) converts deliveries and hands them to the batcher;
- one worker thread takes micro-batches, decodes them, shapes and publishes their results in
  the order they came, and swaps in models the loader finished when no batch is in flight;
  with `batching.workers` > 1 (the default on a multi-core CPU) a pool of that many threads
  classifies several batches at once meanwhile (edge_agent/daemon/batch_worker.py);
- the model store's loader thread polls the models directory and loads, verifies and warms
  up new bundles while the old one keeps serving (edge_agent/models/store.py);
- with `ota.enabled`, the OTA worker thread stages updates delivered over the same MQTT
  connection and installs them into the models directory, where the loader finds them
  (edge_agent/daemon/ota_channel.py); the store's verdicts go to the events topic
  (edge_agent/daemon/model_events.py) and back to the OTA worker, which reports them;
- the main thread ticks: READY once connected, WATCHDOG only while both other threads are
  alive and making progress, periodic stats, and the signal-driven shutdown.

First SIGTERM/SIGINT: stop taking work (new deliveries stay unacknowledged for the next
run), finish what was received, wait for its PUBACKs up to `shutdown_timeout_s`, publish
the offline status, disconnect. A second signal skips the waiting.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Final

from edge_agent import __version__
from edge_agent.config.settings import Config
from edge_agent.daemon.batch_worker import BatchWorker
from edge_agent.daemon.health import Health, assess_health
from edge_agent.daemon.model_events import ModelEvents
from edge_agent.daemon.ota_channel import OtaChannel
from edge_agent.daemon.side_channels import SideChannel
from edge_agent.models.store import BundleRefused, ModelStore, Swapped
from edge_agent.mqtt.link import MqttLink
from edge_agent.pipeline.acks import AckLedger, DeliveryRef
from edge_agent.pipeline.attempts import AttemptLog
from edge_agent.pipeline.batcher import Batcher
from edge_agent.pipeline.inbound import Inbound
from edge_agent.pipeline.processing import Processor
from edge_agent.telemetry.logs import get_logger
from edge_agent.telemetry.metrics import MetricsServer
from edge_agent.telemetry.sd_notify import Notifier
from edge_agent.telemetry.stats import Stats, stats_document

TICK_S: Final = 0.2
SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# A thread that wants the GIL gets it when the holder blocks, or after the switch interval
# (5 ms by default). A result published by the worker is written to the socket by paho's
# network thread, which then waits for the worker to block or for the interval to pass;
# with the default that was milliseconds of every result's latency (docs/benchmarks.md).
GIL_SWITCH_INTERVAL_S: Final = 0.0005

log = get_logger(__name__)


class Service:
    def __init__(
        self,
        config: Config,
        *,
        store: ModelStore,
        attempts: AttemptLog,
        stats: Stats,
        processor: Processor,
        batcher: Batcher[Inbound],
        link: MqttLink,
        ledger: AckLedger,
        events: ModelEvents,
        ota: OtaChannel | None,
        metrics: MetricsServer | None,
        notifier: Notifier,
        channels: tuple[SideChannel, ...] = (),
        workers: int = 1,
    ) -> None:
        self.config = config
        self.store = store
        self.attempts = attempts
        self.stats = stats
        self.batcher = batcher
        self.link = link
        self.ledger = ledger
        self.events = events
        self.ota = ota
        self.metrics = metrics
        self.notifier = notifier
        self.channels = channels  # Home Assistant, control topic (daemon/side_channels.py)
        self.should_exit = threading.Event()
        self.force_exit = False
        self.worker = BatchWorker(
            store=store,
            processor=processor,
            batcher=batcher,
            link=link,
            ledger=ledger,
            attempts=attempts,
            stats=stats,
            workers=workers,
            on_swapped=self._bundle_swapped,
            abandon=lambda: self.force_exit,
        )
        self._ready_sent = False
        self._network_stall_s = 2 * config.broker.keepalive_s + config.broker.reconnect_max_s + 10
        self._last_status = ""

    # ---- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until a signal; returns the exit status."""
        self.install_signal_handlers()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Everything built so far (modules, config, the models' Python objects: about 47,000
        # objects) lives as long as the process. Frozen, the cyclic collector's full passes
        # skip it: unfrozen, each one held the GIL, and so every thread, for 10-23 ms on x86
        # (docs/benchmarks.md), a stall a light stream's messages felt whole. The model store
        # thaws it when it releases a swapped-out model (models/store.py).
        gc.freeze()
        self.worker.start()
        for refused in self.store.startup_rejections:
            self._bundle_refused(refused)  # queued by the link until it is connected
        self.store.start_watching(self.config.models.poll_interval_s, self._bundle_refused)
        self.link.start(self, receive_maximum=self.config.broker.receive_maximum)
        log.info(
            "agent_started",
            version=__version__,
            models=self.store.versions(),
            routes=[route.subscribe for route in self.config.routes],
            broker=f"{self.config.broker.host}:{self.config.broker.port}",
            workers=self.worker.workers,
        )
        next_watchdog = 0.0
        last_health = Health(worker=True, network=True)
        next_stats = time.monotonic() + self.config.stats_interval_s
        failed = False
        while not self.should_exit.is_set():
            now = time.monotonic()
            if not self.worker.is_alive():
                log.error("worker_died")
                failed = True
                break
            if self.link.connected and not self._ready_sent:
                self._ready_sent = True
                self.notifier.ready(status="connected, models loaded")
            interval = self.notifier.watchdog_interval_s
            if interval is not None and now >= next_watchdog:
                health = self.health(now)
                if health.ok:
                    self.notifier.watchdog()
                    next_watchdog = now + interval
                elif health != last_health:  # once per change, not every tick
                    log.error(
                        "watchdog_withheld", worker_ok=health.worker, network_ok=health.network
                    )
                last_health = health
            if self.config.stats_interval_s > 0 and now >= next_stats:
                next_stats = now + self.config.stats_interval_s
                self.publish_stats()
            self._update_status_line()
            self.should_exit.wait(TICK_S)
        status = self.shutdown()
        return 1 if failed else status

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.should_exit.is_set():
            self.force_exit = True
            log.warning("shutdown_forced", signal=signal.Signals(signum).name)
        else:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.should_exit.set()

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread (tests call handle_exit)
        for sig in SIGNALS:
            signal.signal(sig, self.handle_exit)

    def shutdown(self) -> int:
        started = time.monotonic()
        deadline = started + self.config.shutdown_timeout_s
        self.notifier.stopping(status="draining")
        self.link.stop_accepting()
        self.batcher.close()
        self.store.stop_watching()
        self._wait(lambda: not self.worker.is_alive(), deadline)
        if self.ota is not None:
            self.ota.stop(timeout_s=max(0.1, deadline - time.monotonic()))
        self._wait(lambda: self.ledger.pending() == 0, deadline)
        unfinished = self.ledger.pending()
        remaining = max(0.0, deadline - time.monotonic())
        self.link.close(offline_wait_s=min(2.0, remaining + 0.5), abandon=lambda: self.force_exit)
        if self.metrics is not None:
            self.metrics.stop()
        self.attempts.close()
        log.info(
            "agent_stopped",
            drained_s=round(time.monotonic() - started, 3),
            unacknowledged=unfinished,
            left_in_queue=len(self.batcher),
            forced=self.force_exit,
        )
        return 0

    def _wait(self, done: Any, deadline: float) -> None:
        while not done() and not self.force_exit and time.monotonic() < deadline:
            time.sleep(0.02)

    def health(self, now: float) -> Health:
        return assess_health(
            now,
            worker_alive=self.worker.is_alive(),
            worker_beat=self.worker.beat,
            batch_started=self.worker.batch_started,
            network_alive=self.link.network_alive(),
            network_beat=self.link.last_network_activity,
            network_stall_s=self._network_stall_s,
        )

    def publish_stats(self) -> None:
        snapshot = self.stats.snapshot()
        if not snapshot.connected:
            return
        body = stats_document(
            snapshot,
            queue_depth=len(self.batcher),
            messages_per_s=self.stats.messages_per_s(time.monotonic()),
        )
        topic = self.config.topic(self.config.topics.stats)
        self.link.publish(topic, json.dumps(body, separators=(",", ":")).encode(), qos=0)

    def _update_status_line(self) -> None:
        snapshot = self.stats.snapshot()
        state = "connected" if snapshot.connected else "connecting"
        line = f"{state}, {snapshot.messages_out} results, {len(self.batcher)} queued"
        if line != self._last_status:
            self._last_status = line
            self.notifier.status(line)

    # ---- network thread callbacks (the link's LinkHandler; never block) ------------------

    def on_inbound(self, inbound: Inbound) -> None:
        if self.ota is not None and self.ota.takes(inbound.topic):
            self.ota.deliver(inbound)  # never into the inference queue
            return
        for channel in self.channels:
            if channel.takes(inbound.topic):
                channel.deliver(inbound)  # never into the inference queue
                return
        self.stats.message_received()
        if inbound.qos == 0 and len(self.batcher) >= self.batcher.bound:
            # Receive Maximum bounds only QoS 1/2 deliveries: a QoS 0 flood would grow the
            # queue without limit. QoS 0 promised at most once, so beyond the bound it is
            # shed: counted (stats `shed_qos0`), logged at 1, 2, 4, 8... never queued.
            shed = self.stats.qos0_shed()
            if shed & (shed - 1) == 0:
                log.warning("qos0_shed", depth=len(self.batcher), times=shed, topic=inbound.topic)
            return
        if inbound.qos > 0:
            self.ledger.arrived(DeliveryRef(inbound.generation, inbound.mid))
        over = self.batcher.put(inbound)
        count = self.batcher.over_bound
        if over and count & (count - 1) == 0:  # 1st, 2nd, 4th, 8th...: visible, not a flood
            log.warning(
                "queue_over_bound", depth=len(self.batcher), bound=self.batcher.bound, times=count
            )

    def on_connected(self, generation: int, session_present: bool) -> None:
        forgotten = self.ledger.new_connection(generation)
        requeued = 0
        if session_present:
            # The broker kept our session and will redeliver everything unacknowledged;
            # copies still waiting here would only become duplicates.
            requeued = len(self.batcher.remove_where(lambda item: item.generation < generation))
        if forgotten or requeued:
            log.info("redelivery_expected", unacknowledged=forgotten, dropped_from_queue=requeued)
        self.stats.set_connected(True)
        self.events.publish_online()
        if self.ota is not None:
            self.ota.connected()
        for channel in self.channels:
            channel.connected()

    def on_disconnected(self) -> None:
        self.stats.set_connected(False)

    # ---- the model store's verdicts --------------------------------------------------

    def _bundle_refused(self, refused: BundleRefused) -> None:
        """Loader thread (or startup): the model keeps its serving version."""
        self.events.rejected(refused)
        if self.ota is not None:
            self.ota.swap_result(refused.name, refused.version, refused.reason)

    def _bundle_swapped(self, swapped: Swapped) -> None:
        """Worker thread, between two batches."""
        self.events.swapped(swapped)
        if self.ota is not None:
            self.ota.swap_result(swapped.name, swapped.version, None)
        for channel in self.channels:
            channel.swapped(swapped)
