"""The signed OTA manifest: envelope, payload schema, topics. Pure: bytes in, values out.

An update travels as an envelope `{"format": 1, "key_id", "signature", "payload"}` whose
payload is base64 of the manifest JSON bytes. The receiver checks the signature over those
exact bytes before it parses them: nothing an attacker wrote is interpreted unless a trusted
key signed it. See docs/ota.md for the threat model and the topic layout.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from edge_agent.bundle.keys import OTA_UPDATE, Keyring, SignatureError, signed_as
from edge_agent.bundle.layout import (
    BUNDLE_FILES,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    REQUIRED_FILES,
    SIGNATURE_FILE,
)
from edge_agent.bundle.manifest import NAME_PATTERN
from edge_agent.bundle.signer import Signer
from edge_agent.bundle.versions import Version, version_key

FORMAT: Final = 1
PAYLOAD_TYPE: Final = "edge-agent-ota"
MAX_ENVELOPE_BYTES: Final = 1 << 20
MIN_CHUNK_SIZE: Final = 1 << 10
MAX_CHUNK_SIZE: Final = 1 << 20
DEFAULT_CHUNK_SIZE: Final = 128 << 10
MAX_FILE_BYTES: Final = 1 << 30
# Files read whole (the bundle format's limits): refused before a byte is fetched.
SMALL_FILE_LIMITS: Final = {MANIFEST_FILE: MAX_MANIFEST_BYTES, SIGNATURE_FILE: MAX_SIGNATURE_BYTES}
UPDATE_ID_HEX_CHARS: Final = 16

MODEL_NAME_RE: Final = NAME_PATTERN  # the bundle format's rule (docs/design.md)
# Device ids and fleet groups become MQTT topic levels: no wildcards, separators or NUL.
TARGET_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
KEY_ID_RE: Final = re.compile(r"[0-9a-f]{16}")  # bundle/keys.py: sha256 of the key, 16 digits


class UpdateRejectedError(Exception):
    """An update fails a check; the message is the reason reported to the operator."""


def parse_version(text: str) -> Version:
    version = version_key(text)
    if version is None:
        raise UpdateRejectedError(f"version {text!r} is not MAJOR.MINOR.PATCH")
    return version


def update_id_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:UPDATE_ID_HEX_CHARS]


# ---------------------------------------------------------------------------------- topics


def update_topic(prefix: str, *, device: str | None = None, fleet: str | None = None) -> str:
    if device is not None:
        return f"{prefix}/device/{device}/update"
    if fleet is not None:
        return f"{prefix}/fleet/{fleet}/update"
    raise ValueError("an update targets a device or a fleet")


def report_topic(prefix: str, device: str) -> str:
    return f"{prefix}/device/{device}/report"


def chunk_topic(prefix: str, sha256: str, chunk_size: int, index: int) -> str:
    """Chunks are content-addressed: one retained copy serves every target and version."""
    return f"{prefix}/blob/{sha256}/{chunk_size}/{index}"


# -------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str
    size: int
    chunk_sha256: tuple[str, ...]  # one per chunk: a bad chunk is refused on arrival

    def chunk_length(self, index: int, chunk_size: int) -> int:
        return min(chunk_size, self.size - index * chunk_size)


@dataclass(frozen=True)
class Target:
    device: str | None = None
    fleet: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"device": self.device} if self.device is not None else {"fleet": str(self.fleet)}


@dataclass(frozen=True)
class UpdateManifest:
    update_id: str
    name: str
    version: str
    target: Target
    created: datetime
    expires: datetime
    downgrade: bool
    min_agent_version: str | None
    chunk_size: int
    files: Mapping[str, FileSpec]

    @property
    def total_chunks(self) -> int:
        return sum(len(spec.chunk_sha256) for spec in self.files.values())

    @property
    def total_bytes(self) -> int:
        return sum(spec.size for spec in self.files.values())


def chunk_count(size: int, chunk_size: int) -> int:
    return math.ceil(size / chunk_size)


def build_payload(
    *,
    name: str,
    version: str,
    target: Target,
    files: Mapping[str, bytes],
    chunk_size: int,
    created: datetime,
    expires: datetime,
    downgrade: bool = False,
    min_agent_version: str | None = None,
) -> bytes:
    """The operator side: manifest JSON bytes binding every file by hash, size and chunks."""
    file_entries = {}
    for file_name, content in sorted(files.items()):
        chunks = [
            hashlib.sha256(content[start : start + chunk_size]).hexdigest()
            for start in range(0, len(content), chunk_size)
        ]
        file_entries[file_name] = {
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "chunks": chunks,
        }
    document = {
        "format": FORMAT,
        "type": PAYLOAD_TYPE,
        "name": name,
        "version": version,
        "target": target.to_json(),
        "created": _format_time(created),
        "expires": _format_time(expires),
        "downgrade": downgrade,
        "min_agent_version": min_agent_version,
        "chunk_size": chunk_size,
        "files": file_entries,
    }
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    parse_payload(payload)  # the operator never publishes what a device would refuse to read
    return payload


def seal(payload: bytes, signer: Signer) -> bytes:
    envelope = {
        "format": FORMAT,
        "key_id": signer.key_id,
        "signature": base64.b64encode(signer.sign(signed_as(OTA_UPDATE, payload))).decode(),
        "payload": base64.b64encode(payload).decode(),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def open_envelope(envelope: bytes, keyring: Keyring) -> tuple[bytes, str]:
    """(payload bytes, the signer's key id) once the signature verifies; parse nothing else
    before."""
    key, signature, payload = _unpack_envelope(envelope)
    try:
        keyring.verify_with(signed_as(OTA_UPDATE, payload), signature, key)
    except SignatureError as exc:
        raise UpdateRejectedError(f"bad signature: {exc}") from None
    return payload, key


def unverified_payload(envelope: bytes) -> bytes:
    """The payload without checking its signature: for the operator's own tools reading back
    what they published (`model unpush`), never for anything a device installs."""
    return _unpack_envelope(envelope)[2]


def _unpack_envelope(envelope: bytes) -> tuple[str, bytes, bytes]:
    """(key id, signature, payload) from an envelope's JSON and base64."""
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise UpdateRejectedError(f"manifest envelope is {len(envelope)} bytes, over the limit")
    try:
        outer = json.loads(envelope)
    except RecursionError:  # 1 MiB of "[" is 1 MiB of nesting: refused, never a crash
        raise UpdateRejectedError("manifest envelope is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpdateRejectedError(f"manifest envelope is not JSON: {exc}") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise UpdateRejectedError("manifest envelope is not a format 1 object")
    key, signature_b64, payload_b64 = (outer.get(k) for k in ("key_id", "signature", "payload"))
    if not isinstance(signature_b64, str) or not signature_b64:
        raise UpdateRejectedError("missing signature")
    if not isinstance(key, str) or not isinstance(payload_b64, str):
        raise UpdateRejectedError("manifest envelope lacks key_id or payload")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        payload = base64.b64decode(payload_b64, validate=True)
    except binascii.Error:
        raise UpdateRejectedError("manifest envelope holds invalid base64") from None
    if not KEY_ID_RE.fullmatch(key):
        # Never echoed: whatever an unsigned envelope says would land in the retained
        # report, the events topic and the log (1 MB a message, before this check).
        raise UpdateRejectedError("manifest envelope's key_id is not 16 hex digits")
    return key, signature, payload


def parse_payload(payload: bytes) -> UpdateManifest:
    """Validate a signed payload. Signed is not the same as sane: every field is checked."""
    try:
        doc = json.loads(payload)
    except RecursionError:
        raise UpdateRejectedError("manifest is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpdateRejectedError(f"manifest payload is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("type") != PAYLOAD_TYPE:
        raise UpdateRejectedError("manifest payload is not an edge-agent OTA manifest, format 1")
    name = _field(doc, "name", str)
    if MODEL_NAME_RE.fullmatch(name) is None:
        raise UpdateRejectedError(
            f"model name {name!r} is not allowed (must match {MODEL_NAME_RE.pattern})"
        )
    version = _field(doc, "version", str)
    parse_version(version)
    min_agent = doc.get("min_agent_version")
    if min_agent is not None:
        if not isinstance(min_agent, str):
            raise UpdateRejectedError("min_agent_version must be a string")
        parse_version(min_agent)
    chunk_size = _field(doc, "chunk_size", int)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise UpdateRejectedError(
            f"chunk_size {chunk_size} is outside [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]"
        )
    downgrade = doc.get("downgrade", False)
    if not isinstance(downgrade, bool):
        raise UpdateRejectedError("downgrade must be true or false")
    return UpdateManifest(
        update_id=update_id_of(payload),
        name=name,
        version=version,
        target=_parse_target(doc.get("target")),
        created=_parse_time(_field(doc, "created", str)),
        expires=_parse_time(_field(doc, "expires", str)),
        downgrade=downgrade,
        min_agent_version=min_agent,
        chunk_size=chunk_size,
        files=_parse_files(_field(doc, "files", dict), chunk_size),
    )


def _parse_target(raw: object) -> Target:
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, value),) = raw.items()
        if kind in ("device", "fleet") and isinstance(value, str) and TARGET_RE.fullmatch(value):
            return Target(device=value) if kind == "device" else Target(fleet=value)
    raise UpdateRejectedError('target must be {"device": ID} or {"fleet": GROUP}')


def _parse_files(raw: dict[str, Any], chunk_size: int) -> dict[str, FileSpec]:
    unknown = sorted(set(raw) - BUNDLE_FILES)
    if unknown:
        raise UpdateRejectedError(f"file not allowed in a bundle: {unknown[0]!r}")
    missing = sorted(REQUIRED_FILES - set(raw))
    if missing:
        raise UpdateRejectedError(f"bundle lacks required file {missing[0]!r}")
    files = {}
    for file_name, entry in raw.items():
        if not isinstance(entry, dict):
            raise UpdateRejectedError(f"{file_name}: entry must be an object")
        sha256, size, chunks = entry.get("sha256"), entry.get("size"), entry.get("chunks")
        if not isinstance(sha256, str) or SHA256_RE.fullmatch(sha256) is None:
            raise UpdateRejectedError(f"{file_name}: sha256 must be 64 lowercase hex digits")
        limit = SMALL_FILE_LIMITS.get(file_name, MAX_FILE_BYTES)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
            raise UpdateRejectedError(f"{file_name}: size must be an integer in [0, {limit}]")
        if (
            not isinstance(chunks, list)
            or len(chunks) != chunk_count(size, chunk_size)
            or not all(isinstance(c, str) and SHA256_RE.fullmatch(c) for c in chunks)
        ):
            raise UpdateRejectedError(f"{file_name}: chunks must list one sha256 per chunk")
        files[file_name] = FileSpec(file_name, sha256, size, tuple(chunks))
    return files


def _field(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UpdateRejectedError(f"manifest field {key!r} must be a {kind.__name__}")
    return value


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UpdateRejectedError(f"time {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise UpdateRejectedError(f"time {text!r} lacks a time zone")
    return moment


def check_bundle_manifest(manifest: UpdateManifest, bundle_manifest: bytes) -> None:
    """The bundle's manifest.json must agree with the signed update: no mix-and-match."""
    try:
        doc = json.loads(bundle_manifest)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpdateRejectedError(f"bundle manifest.json is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UpdateRejectedError("bundle manifest.json is not an object")
    if doc.get("name") != manifest.name or doc.get("version") != manifest.version:
        raise UpdateRejectedError("bundle manifest.json names another model or version")
    expected = {
        spec.name: {"sha256": spec.sha256, "size": spec.size}
        for spec in manifest.files.values()
        if spec.name not in (MANIFEST_FILE, SIGNATURE_FILE)
    }
    listed = doc.get("files")
    if not isinstance(listed, dict) or not all(isinstance(e, dict) for e in listed.values()):
        raise UpdateRejectedError("bundle manifest.json has no files object")
    found = {name: {"sha256": e.get("sha256"), "size": e.get("size")} for name, e in listed.items()}
    if found != expected:
        raise UpdateRejectedError("bundle manifest.json files differ from the signed update")
