"""The naive alternative, for comparison only (bench/e2e_bench.py runs it): the forty-line
script people write first. paho-mqtt subscribes, a transformers text-classification
pipeline in PyTorch labels each message as it arrives (on paho's thread), the result is
published back. No batching, no flow control, no error handling.

With `--echo` there is no model at all: each message is answered at once with a fixed
label, which is the latency floor of any paho client on this broker and machine.

    python bench/naive_agent.py CHECKPOINT_DIR --port 1883 --topic naive/in/+
    python bench/naive_agent.py --echo --port 1883 --topic echo/in/+
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--echo", action="store_true", help="no model: answer at once")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--topic", default="naive/in/+")
    args = parser.parse_args()
    if args.echo:

        def classify(text: str, truncation: bool) -> list[dict[str, Any]]:
            return [{"label": "echo", "score": 1.0}]

    else:
        from transformers import pipeline

        classify = pipeline("text-classification", model=args.checkpoint, device="cpu")

    def on_message(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        received = time.monotonic()
        request = json.loads(message.payload)
        result = classify(request["text"], truncation=True)[0]
        body = {
            "id": request.get("id"),
            "topic": message.topic,
            "label": result["label"],
            "score": result["score"],
            "latency_ms": (time.monotonic() - received) * 1000,
        }
        client.publish(message.topic + "/label", json.dumps(body), qos=1)

    def on_connect(client: paho.Client, *args: Any) -> None:
        client.subscribe(args_topic, qos=1)
        address = os.environ.get("NOTIFY_SOCKET")
        if address:  # the bench times cold start the same way for both
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"READY=1", address)

    args_topic = args.topic
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="echo-client" if args.echo else "naive-agent",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect(args.host, args.port)
    client.loop_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
