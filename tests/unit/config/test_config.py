"""Config schema: dotted-path errors, defaults, env overrides, password sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.versions import resolve_bundle
from edge_agent.config.settings import (
    ConfigError,
    config_from_mapping,
    effective_config,
    load_config,
)
from tests.support.agent_process import REPO_ROOT

ROUTE = {"subscribe": "chat/+/text", "model": "sentiment"}


def build(raw: object, tmp_path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return config_from_mapping(raw, base_dir=tmp_path, environ=env or {})


def error_of(raw: object, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        build(raw, tmp_path, env)
    return str(caught.value)


def test_defaults_fill_everything_but_routes(tmp_path: Path) -> None:
    config = build({"routes": [ROUTE]}, tmp_path)
    assert config.broker.protocol == 5
    assert config.routes[0].publish == "{topic}/label"
    assert config.batching.max_batch == 16
    assert config.models_dir == tmp_path / "models"
    assert config.state_path == tmp_path / "state"
    assert config.topic(config.topics.status) == "edge-agent/edge-agent/status"
    assert config.broker.maximum_packet_size == 2 * 2**20
    assert config.routes[0].examples is None


def test_an_examples_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = build({"routes": [{**ROUTE, "model": "encoder", "examples": "l.yaml"}]}, tmp_path)
    assert config.routes[0].examples == str((tmp_path / "l.yaml").resolve())


def test_wrong_type_names_the_dotted_path(tmp_path: Path) -> None:
    raw = {"routes": [ROUTE, {**ROUTE, "qos": "x"}]}
    assert error_of(raw, tmp_path) == "routes[1].qos: expected 0, 1 or 2, got 'x'"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"routes": [ROUTE], "brokr": {}}, "brokr: unknown key"),
        (
            {"routes": [ROUTE], "broker": {"port": "high"}},
            "broker.port: expected an integer, got 'high'",
        ),
        (
            {"routes": [ROUTE], "broker": {"protocol": 4}},
            "broker.protocol: expected 5 or '3.1.1', got 4",
        ),
        ({"routes": [{**ROUTE, "extra": 1}]}, "routes[0].extra: unknown key"),
        ({"routes": [{"subscribe": "a/b"}]}, "routes[0].model: required key is missing"),
        ({"routes": []}, "routes: expected at least one route"),
        (
            {"routes": [ROUTE], "batching": {"max_batch": 0}},
            "batching.max_batch: expected an integer from 1",
        ),
        (
            {"routes": [ROUTE], "batching": {"workers": 0}},
            "batching.workers: expected null or an integer from 1 to 256, got 0",
        ),
        (
            {"routes": [ROUTE], "models": {"threads": 0}},
            "models.threads: expected null or an integer from 1 to 256, got 0",
        ),
        (
            {"routes": [ROUTE], "results": {"echo_text": "yes"}},
            "results.echo_text: expected true or false",
        ),
        ({"routes": [{**ROUTE, "subscribe": "a/#/b"}]}, "routes[0].subscribe: expected '#' only"),
        (
            {"routes": [{**ROUTE, "publish": "{payload}/x"}]},
            "routes[0].publish: expected only placeholders",
        ),
        ({"routes": [{**ROUTE, "group": "a/b"}]}, "routes[0].group: expected a name without"),
        ({"routes": [{"subscribe": "chat/#", "model": "m"}]}, "routes[0].publish: results on"),
        ({"routes": "nope"}, "routes: expected a list, got 'nope'"),
        (
            {"routes": [ROUTE], "broker": {"maximum_packet_size": 100_000}},
            "broker.maximum_packet_size: expected 0 or at least limits.max_payload_bytes",
        ),
        ({"routes": [{**ROUTE, "examples": " "}]}, "routes[0].examples: expected a file path"),
        ({"routes": [ROUTE], "topics": {"errors": "x/+/y"}}, "topics.errors: expected no wildcard"),
    ],
)
def test_rejections(raw: object, expected: str, tmp_path: Path) -> None:
    assert error_of(raw, tmp_path).startswith(expected)


def test_protocol_311_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("broker: {protocol: 3.1.1}\nroutes: [{subscribe: a/+, model: m}]\n")
    assert load_config(path, environ={}).broker.protocol == "3.1.1"


def test_env_overrides_broker(tmp_path: Path) -> None:
    env = {"EDGE_AGENT_BROKER_HOST": "mq.example", "EDGE_AGENT_BROKER_PORT": "8883"}
    config = build({"routes": [ROUTE]}, tmp_path, env)
    assert (config.broker.host, config.broker.port) == ("mq.example", 8883)
    bad = {"EDGE_AGENT_BROKER_PORT": "x"}
    assert error_of({"routes": [ROUTE]}, tmp_path, bad).startswith("EDGE_AGENT_BROKER_PORT")


def test_password_sources_and_it_is_never_printed(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    from_file = build({"routes": [ROUTE], "broker": {"password_file": "pw"}}, tmp_path)
    assert from_file.broker.password == "s3cret"
    assert effective_config(from_file)["broker"]["password"] == "***"
    from_env = build({"routes": [ROUTE], "broker": {"password_env": "PW"}}, tmp_path, {"PW": "e"})
    assert from_env.broker.password == "e"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt").write_text("c")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert (
        build({"routes": [ROUTE], "broker": {"credential": "mqtt"}}, tmp_path, env).broker.password
        == "c"
    )
    assert "CREDENTIALS_DIRECTORY is not set" in error_of(
        {"routes": [ROUTE], "broker": {"credential": "mqtt"}}, tmp_path
    )
    assert "cannot read" in error_of(
        {"routes": [ROUTE], "broker": {"password_file": "nope"}}, tmp_path
    )


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_demo_config_routes_only_to_shipped_bundles() -> None:
    """scripts/demo.sh runs config/edge-agent.yaml against the repo's models/: a route that
    names a bundle not shipped would stop the demo at start-up."""
    config = load_config(REPO_ROOT / "config" / "edge-agent.yaml", environ={})
    assert config.routes
    for route in config.routes:
        bundle = resolve_bundle(Path(config.models.dir), route.model)
        assert load_manifest(bundle).name == route.model
