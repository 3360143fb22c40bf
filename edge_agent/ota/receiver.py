"""Device side of OTA: a state machine from MQTT messages to staged, verified, installed bundles.

The receiver knows nothing about paho. The daemon feeds it `(topic, payload)` and carries out
the actions it returns: `Subscribe`/`Unsubscribe` (QoS 1), `Report` (publish retained, QoS 1),
`Installed` (a bundle now sits in the models directory; the hot-swap watcher takes over).
It does disk I/O and hashing, so run it off paho's network thread.

Flow: a signed manifest arrives retained on `<prefix>/device/<id>/update` or
`<prefix>/fleet/<group>/update` -> signature, then schema, target, expiry, agent version and
rollback are checked -> the receiver subscribes to a sliding window of the missing chunk
topics (retained, content-addressed) -> each chunk is size- and hash-checked against the
signed chunk list and written at its offset in staging -> each completed file is re-hashed
and ONNX files are scanned for external data -> the bundle's own manifest.json must agree
with the signed one -> fsync, rename into `<models_dir>/<name>/<version>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from edge_agent import __version__
from edge_agent.bundle.keys import Keyring
from edge_agent.bundle.layout import CURRENT_LINK, MANIFEST_FILE, ONNX_FILES
from edge_agent.bundle.versions import highest_installed_version
from edge_agent.ota.actions import Action, Installed, Report, Subscribe, Unsubscribe
from edge_agent.ota.admission import check_admissible
from edge_agent.ota.manifest import (
    FileSpec,
    UpdateManifest,
    UpdateRejectedError,
    check_bundle_manifest,
    chunk_topic,
    open_envelope,
    parse_payload,
    report_topic,
    update_id_of,
    update_topic,
)
from edge_agent.ota.stage import (
    ENVELOPE_FILE,
    Staging,
    check_free_space,
    discard_staging,
    has_outcome,
    install_bundle,
    newest_created,
    point_current,
    record_created,
    record_outcome,
    staged_update_ids,
)

DEFAULT_PREFIX: Final = "edge-agent/ota"
DEFAULT_WINDOW: Final = 8
MAX_TRANSFERS: Final = 2  # updates downloading at once
STALL_TIMEOUT: Final = timedelta(minutes=10)  # without a stored chunk
UNSERVED_REASON: Final = "no route uses this model: kept on disk, loaded once a route names it"
PROGRESS_STEPS: Final = 10  # a progress report per tenth of the chunks, not per chunk


@dataclass(frozen=True)
class OtaSettings:
    device_id: str
    fleet: str | None = None
    prefix: str = DEFAULT_PREFIX
    agent_version: str = __version__
    window: int = DEFAULT_WINDOW  # chunk topics subscribed at once: bounds memory and flow
    # Model names the device's routes use (None: unknown). A bundle for any other name is
    # installed but never loaded, and its report says so instead of waiting for a swap.
    served_models: frozenset[str] | None = None


@dataclass
class _Transfer:
    manifest: UpdateManifest
    staging: Staging
    missing: dict[str, set[int]]
    subscribed: dict[str, tuple[FileSpec, int]] = field(default_factory=dict)
    verified_files: set[str] = field(default_factory=set)
    reported_step: int = -1
    last_progress: datetime | None = None  # when it began or last stored a chunk

    @property
    def received(self) -> int:
        return self.manifest.total_chunks - sum(len(m) for m in self.missing.values())


class OtaReceiver:
    def __init__(
        self,
        settings: OtaSettings,
        keyring: Keyring,
        models_dir: Path,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._keyring = keyring
        self._models_dir = models_dir
        self._ota_dir = state_dir / "ota"
        self._clock = clock
        self._transfers: dict[str, _Transfer] = {}
        self._installed: dict[tuple[str, str], UpdateManifest] = {}
        self._update_topics = {update_topic(settings.prefix, device=settings.device_id)}
        if settings.fleet is not None:
            self._update_topics.add(update_topic(settings.prefix, fleet=settings.fleet))
        self._blob_prefix = f"{settings.prefix}/blob/"

    # ------------------------------------------------------------------ entry points

    def start(self) -> list[Action]:
        """Subscribe to the update topics and resume staged transfers. Call on every connect:
        a session the broker did not keep has lost the chunk subscriptions too."""
        actions: list[Action] = [Subscribe(tuple(sorted(self._update_topics)))]
        for transfer in self._transfers.values():
            if transfer.subscribed:
                actions.append(Subscribe(tuple(sorted(transfer.subscribed))))
        for update_id in staged_update_ids(self._ota_dir):
            envelope = (self._ota_dir / update_id / ENVELOPE_FILE).read_bytes()
            actions += self.on_manifest(envelope)
            if update_id not in self._transfers:
                discard_staging(self._ota_dir, update_id)  # e.g. its key is no longer trusted
        return actions

    def on_message(self, topic: str, payload: bytes) -> list[Action]:
        actions = self._drop_stalled()
        if topic in self._update_topics:
            return actions + self.on_manifest(payload)
        if topic.startswith(self._blob_prefix):
            return actions + self.on_chunk(topic, payload)
        return actions

    def _drop_stalled(self) -> list[Action]:
        """Transfers that stored no chunk for STALL_TIMEOUT give their slot back (`failed`,
        not final: their staged chunks stay, and the update's next delivery resumes it)."""
        now = self._clock()
        stalled = [
            t
            for t in self._transfers.values()
            if t.last_progress is not None and now - t.last_progress > STALL_TIMEOUT
        ]
        actions: list[Action] = []
        for transfer in stalled:
            minutes = int(STALL_TIMEOUT.total_seconds() // 60)
            reason = f"stalled: no chunk for {minutes} minutes"
            actions += self._abandon(transfer, reason, final=False)
        return actions

    def on_manifest(self, envelope: bytes) -> list[Action]:
        if not envelope:
            return []  # the operator cleared the retained update
        try:
            payload, signer = open_envelope(envelope, self._keyring)
        except UpdateRejectedError as exc:
            return [self._report("rejected", reason=str(exc))]
        update_id = update_id_of(payload)
        if update_id in self._transfers:
            return []  # the retained copy of an update already in progress
        if has_outcome(self._ota_dir, update_id):
            discard_staging(self._ota_dir, update_id)
            return []  # finished before (retained manifests come back on every connect)
        manifest: UpdateManifest | None = None
        try:
            manifest = parse_payload(payload)
            fleet = manifest.target.fleet or self._settings.fleet
            problem = self._keyring.scope_problem(signer, model=manifest.name, fleet=fleet)
            if problem is not None:
                raise UpdateRejectedError(problem)
            if self._already_installed(manifest):
                self._check_admissible(manifest, rollback=False)
                return self._finish_already_installed(manifest)
            self._check_admissible(manifest)
        except UpdateRejectedError as exc:
            return self._reject_manifest(update_id, manifest, str(exc))
        try:
            check_free_space(self._ota_dir, manifest)
        except UpdateRejectedError as exc:  # space may be freed: tried again on redelivery
            return [self._report("failed", manifest, reason=str(exc), update_id=update_id)]
        if len(self._transfers) >= MAX_TRANSFERS:
            # Each transfer holds staging space and chunk subscriptions; replayed or piled-up
            # updates wait their turn (their next delivery, on reconnect) rather than pile up.
            reason = f"busy: {len(self._transfers)} updates already downloading"
            return [self._report("failed", manifest, reason=reason, update_id=update_id)]
        staging = Staging.create(self._ota_dir, manifest, envelope)
        transfer = _Transfer(
            manifest,
            staging,
            {
                spec.name: set(range(len(spec.chunk_sha256))) - staging.valid_chunks(spec)
                for spec in manifest.files.values()
            },
        )
        transfer.last_progress = self._clock()
        self._transfers[update_id] = transfer
        actions: list[Action] = [self._progress_report(transfer)]
        for spec in manifest.files.values():
            if not transfer.missing[spec.name]:
                actions += self._file_complete(transfer, spec)
        if update_id in self._transfers:
            actions += self._refill(transfer)
        return actions

    def on_chunk(self, topic: str, payload: bytes) -> list[Action]:
        wanted = [t for t in self._transfers.values() if topic in t.subscribed]
        if not wanted:
            # A chunk nobody waits for: a leftover subscription from a persistent session.
            return [Unsubscribe((topic,))]
        actions: list[Action] = []
        for transfer in wanted:
            actions += self._store_chunk(transfer, topic, payload)
        if not any(topic in t.subscribed for t in self._transfers.values()):
            actions.append(Unsubscribe((topic,)))
        return actions

    def on_swap_result(self, name: str, version: str, error: str | None) -> list[Action]:
        """The model store's verdict on a bundle this receiver installed."""
        manifest = self._installed.pop((name, version), None)
        if manifest is None:
            return []
        if error is None:
            return [self._report("swapped", manifest)]
        return [self._report("rejected", manifest, reason=f"model store refused it: {error}")]

    # ------------------------------------------------------------------ checks

    def _check_admissible(self, manifest: UpdateManifest, *, rollback: bool = True) -> None:
        check_admissible(
            manifest,
            device_id=self._settings.device_id,
            fleet=self._settings.fleet,
            agent_version=self._settings.agent_version,
            now=self._clock(),
            newest_created=newest_created(self._ota_dir, manifest.name),
            installed=highest_installed_version(self._models_dir, manifest.name)
            if rollback
            else None,
        )

    def _already_installed(self, manifest: UpdateManifest) -> bool:
        """The same bundle is already on disk (e.g. sent to the device and to its fleet)."""
        existing = self._models_dir / manifest.name / manifest.version / MANIFEST_FILE
        if not existing.is_file():
            return False
        digest = hashlib.sha256(existing.read_bytes()).hexdigest()
        if digest != manifest.files[MANIFEST_FILE].sha256:
            raise UpdateRejectedError(
                f"{manifest.name}/{manifest.version} is installed with different content"
            )
        return True

    # ------------------------------------------------------------------ transfer

    def _refill(self, transfer: _Transfer) -> list[Action]:
        """Keep `window` missing chunks subscribed; only what is missing is ever asked for."""
        room = self._settings.window - len(transfer.subscribed)
        topics: list[str] = []
        manifest = transfer.manifest
        for spec in sorted(manifest.files.values(), key=lambda s: s.name):
            for index in sorted(transfer.missing[spec.name]):
                if room <= 0:
                    break
                topic = chunk_topic(self._settings.prefix, spec.sha256, manifest.chunk_size, index)
                if topic not in transfer.subscribed:
                    transfer.subscribed[topic] = (spec, index)
                    topics.append(topic)
                    room -= 1
        return [Subscribe(tuple(topics))] if topics else []

    def _store_chunk(self, transfer: _Transfer, topic: str, payload: bytes) -> list[Action]:
        spec, index = transfer.subscribed[topic]
        expected_length = spec.chunk_length(index, transfer.manifest.chunk_size)
        if len(payload) > expected_length:
            reason = (
                f"oversize: {spec.name} chunk {index} is {len(payload)} bytes,"
                f" expected {expected_length}"
            )
            return [self._progress_report(transfer, "chunk_rejected", reason)]
        if hashlib.sha256(payload).hexdigest() != spec.chunk_sha256[index]:
            reason = f"hash mismatch: {spec.name} chunk {index} differs from the signed manifest"
            return [self._progress_report(transfer, "chunk_rejected", reason)]
        transfer.staging.write_chunk(spec, index, payload)
        transfer.last_progress = self._clock()
        del transfer.subscribed[topic]
        transfer.missing[spec.name].discard(index)
        actions: list[Action] = []
        step = transfer.received * PROGRESS_STEPS // transfer.manifest.total_chunks
        if step != transfer.reported_step:
            transfer.reported_step = step
            actions.append(self._progress_report(transfer))
        if not transfer.missing[spec.name]:
            actions += self._file_complete(transfer, spec)
        if transfer.manifest.update_id in self._transfers:
            actions += self._refill(transfer)
        return actions

    def _file_complete(self, transfer: _Transfer, spec: FileSpec) -> list[Action]:
        try:
            transfer.staging.verify_file(spec)
            if spec.name in ONNX_FILES:
                transfer.staging.scan_onnx(spec)
        except UpdateRejectedError as exc:
            return self._abandon(transfer, str(exc))
        transfer.verified_files.add(spec.name)
        if transfer.verified_files == set(transfer.manifest.files):
            return self._install(transfer)
        return []

    def _install(self, transfer: _Transfer) -> list[Action]:
        manifest = transfer.manifest
        try:
            self._check_admissible(manifest)  # time passed and versions may have moved meanwhile
            check_bundle_manifest(
                manifest, transfer.staging.read_file(manifest.files[MANIFEST_FILE])
            )
            bundle_dir = transfer.staging.finalize()
        except UpdateRejectedError as exc:
            return self._abandon(transfer, str(exc))
        actions: list[Action] = [self._report("verified", manifest)]
        try:
            destination = install_bundle(
                bundle_dir, self._models_dir, manifest.name, manifest.version
            )
            model_dir = self._models_dir / manifest.name
            if manifest.downgrade or (model_dir / CURRENT_LINK).is_symlink():
                point_current(self._models_dir, manifest.name, manifest.version)
        except UpdateRejectedError as exc:
            return actions + self._abandon(transfer, f"install failed: {exc}")
        except OSError as exc:
            # A disk that is full or failing now may not be later: no final outcome, the
            # verified chunks stay staged, and the next delivery of the (retained) update,
            # on reconnect or restart, installs it from them.
            return actions + self._abandon(transfer, f"install failed: {exc}", final=False)
        record_outcome(self._ota_dir, manifest.update_id, {"state": "installed"})
        record_created(self._ota_dir, manifest.name, manifest.created)
        discard_staging(self._ota_dir, manifest.update_id)
        del self._transfers[manifest.update_id]
        self._installed[(manifest.name, manifest.version)] = manifest
        served = self._settings.served_models
        unserved = served is not None and manifest.name not in served
        return [
            *actions,
            self._report("installed", manifest, reason=UNSERVED_REASON if unserved else None),
            Installed(manifest.name, manifest.version, destination),
        ]

    def _finish_already_installed(self, manifest: UpdateManifest) -> list[Action]:
        if manifest.downgrade:
            point_current(self._models_dir, manifest.name, manifest.version)
        record_outcome(self._ota_dir, manifest.update_id, {"state": "installed"})
        record_created(self._ota_dir, manifest.name, manifest.created)
        return [self._report("installed", manifest, reason="already installed")]

    def _abandon(self, transfer: _Transfer, reason: str, *, final: bool = True) -> list[Action]:
        """Stop a transfer: `rejected` for good, or (not final) `failed`, to be tried again
        when the update is delivered again."""
        manifest = transfer.manifest
        self._transfers.pop(manifest.update_id, None)
        still_wanted = {t for other in self._transfers.values() for t in other.subscribed}
        dropped = tuple(sorted(set(transfer.subscribed) - still_wanted))
        actions: list[Action] = (
            self._reject_manifest(manifest.update_id, manifest, reason)
            if final
            else [self._report("failed", manifest, reason=reason)]
        )
        return [Unsubscribe(dropped), *actions] if dropped else actions

    def _reject_manifest(
        self, update_id: str, manifest: UpdateManifest | None, reason: str
    ) -> list[Action]:
        record_outcome(self._ota_dir, update_id, {"state": "rejected", "reason": reason})
        discard_staging(self._ota_dir, update_id)
        return [self._report("rejected", manifest, reason=reason, update_id=update_id)]

    # ------------------------------------------------------------------ reports

    def _progress_report(
        self, transfer: _Transfer, state: str = "downloading", reason: str | None = None
    ) -> Report:
        return self._report(state, transfer.manifest, reason=reason, received=transfer.received)

    def _report(
        self,
        state: str,
        manifest: UpdateManifest | None = None,
        *,
        reason: str | None = None,
        received: int | None = None,
        update_id: str | None = None,
    ) -> Report:
        document: dict[str, object] = {
            "device": self._settings.device_id,
            "fleet": self._settings.fleet,
            "agent_version": self._settings.agent_version,
            "state": state,
            "at": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "update_id": manifest.update_id if manifest else update_id,
        }
        if manifest is not None:
            document |= {
                "name": manifest.name,
                "version": manifest.version,
                "target": manifest.target.to_json(),
                "total": manifest.total_chunks,
                "received": manifest.total_chunks if received is None else received,
            }
        if reason is not None:
            document["reason"] = reason
        return Report(report_topic(self._settings.prefix, self._settings.device_id), document)
