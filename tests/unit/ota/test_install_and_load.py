"""OTA and signatures with the engine: a real tiny SqueezeBERT bundle (export, INT8, pack),
pushed as an update, installed, then loaded by the engine with the device's keyring."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.signer import Signer, generate_keypair, sign_bundle
from edge_agent.engine.classifier import load_classifier
from edge_agent.ota.push import read_bundle_files
from tests.support.bundles import build_tiny_bundle
from tests.support.keys import Operator
from tests.support.ota_protocol import DeviceFactory, deliver, push, retained


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(
        tmp_path_factory.mktemp("workstation"), name="sentiment", version="1.2.0"
    )


def test_ota_of_a_real_bundle_loads_in_the_engine_with_the_keyring(
    tiny_bundle: Path, operator: Operator, make_device: DeviceFactory
) -> None:
    device = make_device()
    deliver(device, retained(push(operator, read_bundle_files(tiny_bundle))))
    assert device.last_state == "installed"
    installed = device.models_dir / "sentiment" / "1.2.0"
    classifier = load_classifier(installed, keyring=operator.keyring)
    assert (classifier.manifest.name, classifier.manifest.version) == ("sentiment", "1.2.0")
    (prediction,) = classifier.classify(["the movie was great fun"])
    assert prediction.label in classifier.manifest.labels


def test_engine_refuses_unsigned_and_foreign_signed_bundles_when_keys_are_trusted(
    tiny_bundle: Path, operator: Operator, tmp_path: Path
) -> None:
    bundle = tmp_path / "sentiment" / "1.2.0"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "manifest.sig").unlink(missing_ok=True)
    with pytest.raises(BundleError, match=r"manifest\.sig: missing"):
        load_classifier(bundle, keyring=operator.keyring)

    (tmp_path / "stranger").mkdir()
    stranger = Signer.from_file(generate_keypair(tmp_path / "stranger" / "k").private_path)
    sign_bundle(bundle, stranger)
    with pytest.raises(BundleError, match="does not verify with any trusted key id"):
        load_classifier(bundle, keyring=operator.keyring)

    sign_bundle(bundle, operator.signer)  # `edge-agent model sign` does exactly this
    assert load_classifier(bundle, keyring=operator.keyring).manifest.version == "1.2.0"
