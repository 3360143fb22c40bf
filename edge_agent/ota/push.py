"""Operator side of OTA: turn a bundle folder into the MQTT messages of a signed update,
and work out the messages that take a retained update off the broker again.

Pure apart from reading the bundle: the result is a list of (topic, payload, retain) that any
MQTT client can publish, chunks first and the manifest last, so a device that sees the
manifest finds every chunk already retained on the broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from edge_agent.bundle.keys import BUNDLE_MANIFEST, signed_as
from edge_agent.bundle.layout import BUNDLE_FILES, MANIFEST_FILE, SIGNATURE_FILE
from edge_agent.bundle.signer import Signer
from edge_agent.ota.manifest import (
    DEFAULT_CHUNK_SIZE,
    FileSpec,
    Target,
    UpdateManifest,
    UpdateRejectedError,
    build_payload,
    chunk_topic,
    parse_payload,
    seal,
    unverified_payload,
    update_topic,
)

DEFAULT_EXPIRY: Final = timedelta(days=14)


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Update:
    manifest: UpdateManifest
    envelope: bytes
    messages: tuple[OutboundMessage, ...]


class BundleReadError(Exception):
    """The bundle folder cannot be pushed as it is; the message names the problem."""


def read_bundle_files(bundle_dir: Path) -> dict[str, bytes]:
    """The bundle's files as bytes, checked against the allow-list."""
    files: dict[str, bytes] = {}
    for entry in sorted(bundle_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name not in BUNDLE_FILES or not entry.is_file():
            raise BundleReadError(f"{entry}: not a bundle file ({', '.join(sorted(BUNDLE_FILES))})")
        files[entry.name] = entry.read_bytes()
    if MANIFEST_FILE not in files:
        raise BundleReadError(f"{bundle_dir}: no {MANIFEST_FILE}")
    return files


def build_update(
    files: dict[str, bytes],
    signer: Signer,
    target: Target,
    *,
    prefix: str,
    now: datetime,
    expires_in: timedelta = DEFAULT_EXPIRY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    downgrade: bool = False,
    min_agent_version: str | None = None,
) -> Update:
    """Name and version come from the bundle's own manifest.json, so they cannot disagree."""
    name, version, bundle_min_agent = _identity(files[MANIFEST_FILE])
    # Devices with trusted keys refuse unsigned bundles, so the update always carries a
    # signature over manifest.json; ed25519 is deterministic, an existing one is identical.
    signature = signer.sign(signed_as(BUNDLE_MANIFEST, files[MANIFEST_FILE]))
    files = {**files, SIGNATURE_FILE: signature}
    payload = build_payload(
        name=name,
        version=version,
        target=target,
        files=files,
        chunk_size=chunk_size,
        created=now,
        expires=now + expires_in,
        downgrade=downgrade,
        min_agent_version=min_agent_version or bundle_min_agent,
    )
    manifest = parse_payload(payload)
    envelope = seal(payload, signer)
    messages = [
        OutboundMessage(
            topic, files[spec.name][index * chunk_size : (index + 1) * chunk_size], retain=True
        )
        for spec, index, topic in _chunks(manifest, prefix)
    ]
    messages.append(
        OutboundMessage(
            update_topic(prefix, device=target.device, fleet=target.fleet), envelope, retain=True
        )
    )
    return Update(manifest, envelope, tuple(messages))


@dataclass(frozen=True)
class Clearing:
    manifest: UpdateManifest | None  # None: what was retained is no readable update
    messages: tuple[OutboundMessage, ...]
    shared_chunks: int  # chunk topics left alone: another retained update still needs them


def clear_update(retained_updates: Mapping[str, bytes], topic: str, prefix: str) -> Clearing:
    """Empty retained messages that remove the update retained on `topic` from the broker.

    `retained_updates` holds every retained update envelope under the prefix, by topic. The
    update topic is cleared first: a device that sees it empty starts no new download (and
    one mid-download keeps what it has staged). Then the update's chunk topics, except those
    another retained update refers to; chunks are content-addressed and shared between
    targets and versions, so clearing them blindly could break a different rollout.
    """
    if not retained_updates.get(topic):
        raise UpdateRejectedError(f"no update is retained on {topic}")
    manifest = _readable(retained_updates[topic])
    still_needed: set[str] = set()
    for other_topic, envelope in retained_updates.items():
        other = _readable(envelope) if other_topic != topic else None
        if other is not None:
            still_needed |= _chunk_topics(other, prefix)
    own = _chunk_topics(manifest, prefix) if manifest is not None else set()
    messages = [OutboundMessage(topic, b"", retain=True)]
    messages += [OutboundMessage(t, b"", retain=True) for t in sorted(own - still_needed)]
    return Clearing(manifest, tuple(messages), len(own & still_needed))


def _readable(envelope: bytes) -> UpdateManifest | None:
    """The update an envelope announces; None when it is unreadable (no device can install
    it, so it needs no chunks, and clearing it is all there is to do)."""
    try:
        return parse_payload(unverified_payload(envelope)) if envelope else None
    except UpdateRejectedError:
        return None


def _chunks(manifest: UpdateManifest, prefix: str) -> Iterator[tuple[FileSpec, int, str]]:
    """(file, chunk index, chunk topic) for every chunk of the update, in publishing order."""
    for spec in manifest.files.values():
        for index in range(len(spec.chunk_sha256)):
            yield spec, index, chunk_topic(prefix, spec.sha256, manifest.chunk_size, index)


def _chunk_topics(manifest: UpdateManifest, prefix: str) -> set[str]:
    return {topic for _, _, topic in _chunks(manifest, prefix)}


def _identity(manifest_bytes: bytes) -> tuple[str, str, str | None]:
    try:
        doc = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleReadError(f"{MANIFEST_FILE} is not JSON: {exc}") from None
    name, version = (doc.get(k) if isinstance(doc, dict) else None for k in ("name", "version"))
    if not isinstance(name, str) or not isinstance(version, str):
        raise BundleReadError(f"{MANIFEST_FILE} lacks a name or version")
    min_agent = doc.get("min_agent_version")
    return name, version, min_agent if isinstance(min_agent, str) else None
