"""The daemon's configuration: frozen dataclasses built from YAML, checked field by field.

Every problem is reported with its dotted path and what was expected
(`routes[1].qos: expected 0, 1 or 2, got 'x'`), because the person reading it is usually
on a device console with nothing but that one line. The schema lives in the dataclasses
themselves: `_build` walks their type hints, so a new field needs no new validation code.
Relative paths are resolved against the config file's folder, so a config and the models
it names can move together.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from edge_agent.config.checks import check_semantics
from edge_agent.config.integrations import (
    CONFIG_SCHEMA_VERSION,
    ControlConfig,
    HomeAssistantConfig,
)
from edge_agent.config.schema import ConfigError, build, describe

__all__ = [  # ConfigError is re-exported: callers catch it from here
    "CONFIG_SCHEMA_VERSION",
    "BatchingConfig",
    "BrokerConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "HomeAssistantConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelsConfig",
    "OtaConfig",
    "ResultsConfig",
    "RouteConfig",
    "TlsConfig",
    "TopicsConfig",
    "config_from_mapping",
    "effective_config",
    "load_config",
]

ENV_PREFIX: Final = "EDGE_AGENT_BROKER_"
CREDENTIALS_ENV: Final = "CREDENTIALS_DIRECTORY"  # set by systemd's LoadCredential=


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "localhost"
    port: int = 1883
    client_id: str = "edge-agent"
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    credential: str | None = None
    tls: TlsConfig | None = None
    protocol: Literal[5, "3.1.1"] = 5
    keepalive_s: int = 30
    session_expiry_s: int = 86400
    receive_maximum: int = 64
    # MQTT 5 Maximum Packet Size: the broker never sends the agent a larger packet, so a
    # 200 MB (retained) payload cannot exhaust a device's memory before any size check. The
    # broker drops such a message without telling its publisher or the agent: the one kind
    # of message the agent cannot answer, hence a bound well above limits.max_payload_bytes
    # (those get a payload_too_large error result) and above an OTA chunk (at most 1 MiB).
    # 0: no bound (MQTT 3.1.1 has none; docs/security.md).
    maximum_packet_size: int = 2 * 2**20
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    # Resolved at load time from password_file / password_env / credential / environment;
    # never written in the YAML itself.
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RouteConfig:
    subscribe: str
    model: str
    # An examples file (YAML or CSV, edge_agent/labels/examples.py): labels defined by a few
    # texts each, answered through `model`, which is then an embedding bundle. Relative to
    # the config file; edited in place, it is reloaded like a model.
    examples: str | None = None
    publish: str = "{topic}/label"
    group: str | None = None
    input: Literal["auto", "text", "json"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    passthrough: tuple[str, ...] = ()
    qos: Literal[0, 1, 2] = 1  # QoS of the results; inputs are always subscribed at QoS 1
    # Output shaping (edge_agent/pipeline/output.py); the defaults are the full document.
    retain: bool = False
    on_change: bool = False
    payload: Literal["full", "label"] = "full"
    fields: tuple[str, ...] | None = None
    min_score: float | None = None
    uncertain_label: str = "uncertain"


@dataclass(frozen=True)
class KeyScopeConfig:
    """What one trusted key (by key id) may sign: these models, updates for these fleets
    (empty: any). Keys without a scope may sign anything."""

    key_id: str
    models: tuple[str, ...] = ()
    fleets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = "models"
    precision: Literal["auto", "int8", "fp32"] = "auto"
    threads: int | None = None
    poll_interval_s: float = 1.0
    trusted_keys: tuple[str, ...] = ()
    key_scopes: tuple[KeyScopeConfig, ...] = ()


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 16
    # 0: continuous batching, a lone message runs at once; a batch is whatever queued
    # while the previous one ran. A wait buys larger batches at light load for latency
    # (docs/benchmarks.md has the measured trade-off).
    max_wait_ms: float = 0.0
    # Batches classified at once, each on `models.threads` onnxruntime threads; null: one
    # per physical core. Results still leave in arrival order.
    workers: int | None = None


@dataclass(frozen=True)
class LimitsConfig:
    max_payload_bytes: int = 65536
    max_text_bytes: int = 4096
    max_attempts: int = 3


@dataclass(frozen=True)
class ResultsConfig:
    top_k: int = 3
    echo_text: bool = False
    # Filters a request's MQTT 5 Response Topic must match ({client_id} substituted); the
    # agent's own status, errors, dead-letter, stats and OTA topics are refused whatever
    # this says (docs/security.md).
    response_topics: tuple[str, ...] = ("edge-agent/{client_id}/reply/#",)


@dataclass(frozen=True)
class TopicsConfig:
    status: str = "edge-agent/{client_id}/status"
    stats: str = "edge-agent/{client_id}/stats"
    errors: str = "edge-agent/{client_id}/errors"
    dead_letter: str = "edge-agent/{client_id}/dead-letter"


@dataclass(frozen=True)
class LoggingConfig:
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class OtaConfig:
    enabled: bool = False
    prefix: str = "edge-agent/ota"
    fleet: str | None = None


@dataclass(frozen=True)
class Config:
    routes: tuple[RouteConfig, ...]
    broker: BrokerConfig = BrokerConfig()
    models: ModelsConfig = ModelsConfig()
    batching: BatchingConfig = BatchingConfig()
    limits: LimitsConfig = LimitsConfig()
    results: ResultsConfig = ResultsConfig()
    topics: TopicsConfig = TopicsConfig()
    stats_interval_s: float = 30.0
    shutdown_timeout_s: float = 10.0
    state_dir: str | None = None
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    ota: OtaConfig = OtaConfig()
    # Defined in config/integrations.py; a factory because ruff cannot see they are frozen.
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    control: ControlConfig = field(default_factory=ControlConfig)

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir)

    @property
    def state_path(self) -> Path:
        if self.state_dir is not None:
            return Path(self.state_dir)
        return self.models_dir.parent / "state"

    def topic(self, template: str) -> str:
        """A configured status/stats/errors topic with `{client_id}` filled in."""
        return template.replace("{client_id}", self.broker.client_id)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError with one clear line."""
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not valid UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", error)
        raise ConfigError(f"{path}:{line} not valid YAML: {problem}") from None
    if raw is None:
        raw = {}
    return config_from_mapping(raw, base_dir=path.parent, environ=env)


def config_from_mapping(
    raw: object, *, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed mapping (tests and `check-config` share this path)."""
    env = os.environ if environ is None else environ
    if not isinstance(raw, dict):
        raise ConfigError(f"(top level): expected a mapping, got {describe(raw)}")
    raw = dict(raw)
    raw["broker"] = _apply_env_overrides(raw.get("broker") or {}, env)
    config: Config = build(Config, raw, "", skip=("password",))
    check_semantics(config)
    return _resolve(config, base_dir, env)


def _apply_env_overrides(broker: object, env: Mapping[str, str]) -> object:
    if not isinstance(broker, dict):
        return broker  # _build reports the wrong type with its path
    merged = dict(broker)
    for key, convert in (("host", str), ("port", int), ("username", str), ("client_id", str)):
        value = env.get(ENV_PREFIX + key.upper())
        if value is None:
            continue
        try:
            merged[key] = convert(value)
        except ValueError:
            name = ENV_PREFIX + key.upper()
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    return merged


def _resolve(config: Config, base_dir: Path, env: Mapping[str, str]) -> Config:
    def absolute(value: str) -> str:
        return str((base_dir / Path(value).expanduser()).resolve())

    broker = config.broker
    tls = broker.tls
    if tls is not None:
        tls = TlsConfig(*(absolute(v) if v is not None else None for v in dataclasses.astuple(tls)))
        for name, value in zip(
            ("ca_file", "cert_file", "key_file"), dataclasses.astuple(tls), strict=True
        ):
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"broker.tls.{name}: file not found: {value}")
    password_file = absolute(broker.password_file) if broker.password_file else None
    broker = dataclasses.replace(
        broker,
        tls=tls,
        password_file=password_file,
        password=_read_password(dataclasses.replace(broker, password_file=password_file), env),
    )
    models = dataclasses.replace(
        config.models,
        dir=absolute(config.models.dir),
        trusted_keys=tuple(absolute(key) for key in config.models.trusted_keys),
    )
    state_dir = absolute(config.state_dir) if config.state_dir is not None else None
    routes = tuple(
        dataclasses.replace(route, examples=absolute(route.examples)) if route.examples else route
        for route in config.routes
    )
    return dataclasses.replace(
        config, broker=broker, models=models, state_dir=state_dir, routes=routes
    )


def _read_password(broker: BrokerConfig, env: Mapping[str, str]) -> str | None:
    override = env.get(ENV_PREFIX + "PASSWORD")
    if override is not None:
        return override
    if broker.password_env is not None:
        value = env.get(broker.password_env)
        if value is None:
            raise ConfigError(
                f"broker.password_env: environment variable {broker.password_env} is not set"
            )
        return value
    source: Path | None = None
    where = ""
    if broker.password_file is not None:
        source, where = Path(broker.password_file), "broker.password_file"
    elif broker.credential is not None:
        directory = env.get(CREDENTIALS_ENV)
        if directory is None:
            raise ConfigError(
                f"broker.credential: ${CREDENTIALS_ENV} is not set (LoadCredential= in the unit)"
            )
        source, where = Path(directory) / broker.credential, "broker.credential"
    if source is None:
        return None
    try:
        # One trailing newline is what editors and `echo` add; it is never part of a password.
        return source.read_text(encoding="utf-8").removesuffix("\n")
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {source}: {error.strerror or error}") from None


def effective_config(config: Config) -> dict[str, Any]:
    """The config as plain data for printing; the password is never shown."""
    data = dataclasses.asdict(config)
    broker = data["broker"]
    broker["password"] = "***" if config.broker.password is not None else None
    plain: dict[str, Any] = _lists(data)
    return plain


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    return value
