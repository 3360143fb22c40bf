"""OTA time for a bundle of realistic size over a local mosquitto (not a test: prints figures).

Builds a bundle whose model.onnx is a real ONNX graph of about --mb megabytes (a large
embedding table, the size of SqueezeBERT's INT8 graph by default), pushes it with the real
push code at the default chunk size, and times a device receiver until it reports installed.

    PYTHONPATH=. python bench/ota_transfer.py [--mb 50] [--chunk-kib 128] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edge_agent.bundle.keys import Keyring
from edge_agent.bundle.signer import Signer, generate_keypair
from edge_agent.mqtt.operator import BrokerAddress, publish_messages
from edge_agent.ota.manifest import Target
from edge_agent.ota.push import build_update, read_bundle_files
from edge_agent.ota.receiver import OtaReceiver, OtaSettings
from tests.support.broker import Broker
from tests.support.bundles import bundle_files, write_bundle
from tests.support.ota_device import DeviceLink


def big_model(megabytes: float) -> bytes:
    hidden = 128
    rows = int(megabytes * 1e6 / (hidden * 4))
    embedding = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((rows, hidden)).astype(np.float32), "embedding"
    )
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embedding", "input_ids"], ["logits"])],
        "big",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        initializer=[embedding],
    )
    model: bytes = helper.make_model(graph).SerializeToString()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--chunk-kib", type=int, default=128)
    parser.add_argument("--bundle", type=Path, help="push this bundle folder instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.bundle is not None:
            bundle = args.bundle
        else:
            files = bundle_files("sentiment", "2.0.0", model=big_model(args.mb))
            bundle = write_bundle(root / "workstation", files)
        pair = generate_keypair(root / "operator")
        prefix = "bench/ota"
        broker = Broker(root / "broker").start()
        port = broker.port
        try:
            started = time.monotonic()
            update = build_update(
                read_bundle_files(bundle),
                Signer.from_file(pair.private_path),
                Target(device="pi-7"),
                prefix=prefix,
                now=datetime.now(UTC),
                chunk_size=args.chunk_kib * 1024,
            )
            built = time.monotonic()
            publish_messages(
                BrokerAddress("127.0.0.1", port),
                [(m.topic, m.payload, m.retain) for m in update.messages],
            )
            published = time.monotonic()
            receiver = OtaReceiver(
                OtaSettings(device_id="pi-7", prefix=prefix),
                Keyring.from_files([pair.public_path]),
                root / "device" / "models",
                root / "device" / "state",
            )
            device = DeviceLink(port, receiver)
            try:
                device.wait_for(lambda d: "installed" in d.states, timeout_s=600)
            finally:
                device.close()
            installed = time.monotonic()
        finally:
            broker.kill()
        size_mb = update.manifest.total_bytes / 1e6
        chunks = update.manifest.total_chunks
        print(f"bundle {size_mb:.1f} MB, {chunks} chunks of {args.chunk_kib} KiB")
        print(f"push: build+sign {built - started:.2f} s, publish {published - built:.2f} s")
        print(
            f"device: download+verify+install {installed - published:.2f} s"
            f" ({size_mb / (installed - published):.1f} MB/s)"
        )


if __name__ == "__main__":
    main()
