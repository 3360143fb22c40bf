"""A TCP proxy on loopback that breaks connections on command: reset (RST both ways),
stall (stop forwarding on the live connections, new ones pass), black hole (stall that
never lifts for those connections) and slice (forward in 1-7 byte pieces, so MQTT packets
arrive split at every possible boundary). Threads, one pair per connection."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Final

CHUNK: Final = 65536


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.stalled_until = 0.0
        self.closed = threading.Event()

    def close(self, reset: bool) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            try:
                if reset:  # linger 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass


class FaultyProxy:
    def __init__(self, upstream_port: int, seed: int) -> None:
        self._upstream_port = upstream_port
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._slicing = False
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream_port), 2)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
            threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, upstream, client), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, target: socket.socket) -> None:
        held = b""
        source.settimeout(0.05)
        while not pair.closed.is_set():
            try:
                data = source.recv(CHUNK)
                if not data:
                    break
                held += data
            except TimeoutError:
                pass
            except OSError:
                break
            if time.monotonic() < pair.stalled_until or not held:
                continue  # keep reading (to notice a close) but forward nothing
            try:
                if self._slicing:
                    while held:
                        size = self._random.randint(1, 7)
                        target.sendall(held[:size])
                        held = held[size:]
                        time.sleep(0.0005)
                else:
                    target.sendall(held)
                    held = b""
            except OSError:
                break
        pair.close(reset=False)

    def _live(self) -> list[_Pair]:
        with self._lock:
            self._pairs = [pair for pair in self._pairs if not pair.closed.is_set()]
            return list(self._pairs)

    def reset(self) -> int:
        live = self._live()
        for pair in live:
            pair.close(reset=True)
        return len(live)

    def stall(self, seconds: float) -> None:
        """Stop forwarding on the live connections for a while (a black hole if long)."""
        until = time.monotonic() + seconds
        for pair in self._live():
            pair.stalled_until = until

    def slice(self, on: bool) -> None:
        self._slicing = on

    def close(self) -> None:
        self._listener.close()
        for pair in self._live():
            pair.close(reset=True)
