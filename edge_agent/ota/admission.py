"""Whether a signed update may go in on this device: pure rules over its manifest and what the
device knows (its id and fleet, the agent's version, the time, what is installed)."""

from __future__ import annotations

from datetime import datetime

from edge_agent.ota.manifest import UpdateManifest, UpdateRejectedError, parse_version


def check_admissible(
    manifest: UpdateManifest,
    *,
    device_id: str,
    fleet: str | None,
    agent_version: str,
    now: datetime,
    newest_created: datetime | None,
    installed: tuple[int, ...] | None,
) -> None:
    """UpdateRejectedError naming the rule an update breaks. `newest_created`: when the newest
    update installed for its model was signed; `installed`: the highest version installed
    (None skips the rollback rule: the bundle is already there)."""
    target = manifest.target
    if target.device is not None and target.device != device_id:
        raise UpdateRejectedError(f"update targets device {target.device!r}, not this device")
    if target.fleet is not None and target.fleet != fleet:
        raise UpdateRejectedError(f"update targets fleet {target.fleet!r}, not this device's")
    if now >= manifest.expires:
        raise UpdateRejectedError(f"expired at {manifest.expires.isoformat()}")
    needed = manifest.min_agent_version
    if needed is not None and parse_version(needed) > parse_version(agent_version):
        raise UpdateRejectedError(f"needs agent {needed}, this is {agent_version}")
    if manifest.downgrade and newest_created is not None and manifest.created <= newest_created:
        # A downgrade, validly signed but older than an update installed since: replayed from
        # the broker's history, it would undo that newer decision.
        raise UpdateRejectedError(
            f"stale downgrade: created {manifest.created.isoformat()}, not after the newest"
            f" update installed for {manifest.name} (created {newest_created.isoformat()})"
        )
    if installed is None:
        return
    if parse_version(manifest.version) <= installed and not manifest.downgrade:
        shown = ".".join(map(str, installed))
        raise UpdateRejectedError(
            f"rollback: version {manifest.version} is not newer than installed {shown}"
            " (an operator-signed downgrade is required)"
        )
