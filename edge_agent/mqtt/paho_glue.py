"""Small adapters around paho for the agent's link: properties, socket options, log records.

Kept apart from the link's session logic so that link.py reads as the connection's rules.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from edge_agent.telemetry.logs import get_logger

log = get_logger("edge_agent.mqtt.link")  # paho's lines read as the link's own


def new_properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it unannotated


def send_packets_at_once(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho leaves Nagle's algorithm on. A small write that follows another still
    unacknowledged (a result PUBLISH after an input's PUBACK) then waits for the broker's
    delayed ACK, 40 ms on Linux: that was the slow mode of the agent's latency. MQTT packets
    are whole messages already, so each goes out as soon as it is written."""
    with contextlib.suppress(AttributeError, OSError):  # not a TCP socket (unix, websocket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PahoLogBridge(logging.Logger):
    """The logger paho is given: its lines go to our logger, and every line (PINGREQ and
    PINGRESP included) also proves the network thread is still looping, which the watchdog
    checks. paho only ever calls `log(level, fmt, *args)`; overriding it skips building a
    LogRecord, with its caller lookup, for the several DEBUG lines of every message, which
    took a fifth of the network thread's time at saturation."""

    def __init__(self, name: str, beat: Callable[[], None]) -> None:
        super().__init__(name, logging.DEBUG)
        self._beat = beat

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        self._beat()
        if level >= logging.ERROR:
            log.error("paho_log", message=str(msg) % args)
        elif level >= logging.WARNING:
            log.warning("paho_log", message=str(msg) % args)
        elif level >= logging.INFO:
            log.info("paho_log", message=str(msg) % args)


def backoff_delay(failures: int, min_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff: uniform in [min_s, min(max_s, min_s * 2**failures)]."""
    cap = min(max_s, min_s * 2 ** min(failures, 30))
    return min_s + random.uniform(0, max(0.0, cap - min_s))
