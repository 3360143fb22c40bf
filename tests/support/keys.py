"""An operator's signing key pair and the device-side keyring that trusts it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.bundle.keys import Keyring
from edge_agent.bundle.signer import Signer, generate_keypair


@dataclass(frozen=True)
class Operator:
    signer: Signer
    keyring: Keyring
    public_key: Path
    private_key: Path


def new_operator(folder: Path) -> Operator:
    """A fresh key pair under `folder` (created), as `edge-agent model keygen` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = generate_keypair(folder / "operator")
    return Operator(
        Signer.from_file(pair.private_path),
        Keyring.from_files([pair.public_path]),
        pair.public_path,
        pair.private_path,
    )
