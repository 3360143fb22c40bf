"""What the schema cannot say: ranges, exclusive options and topics that must make sense.

`schema.build` has already checked every field's type; these checks look at values and at
how fields relate (a route publishing into its own filter, two password sources), and
raise ConfigError with the dotted path of the first problem, like the schema does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edge_agent.config.integrations import check_integrations, check_route_output
from edge_agent.config.schema import ConfigError
from edge_agent.pipeline import routing

if TYPE_CHECKING:
    from edge_agent.config.settings import Config


def check_semantics(config: Config) -> None:
    """Raise ConfigError for the first value that is well-typed but cannot work."""
    if not config.routes:
        raise ConfigError("routes: expected at least one route")
    positive = (
        ("broker.port", config.broker.port, 1, 65535),
        ("broker.keepalive_s", config.broker.keepalive_s, 1, 65535),
        ("broker.receive_maximum", config.broker.receive_maximum, 1, 65535),
        ("broker.session_expiry_s", config.broker.session_expiry_s, 0, 2**32 - 1),
        ("broker.maximum_packet_size", config.broker.maximum_packet_size, 0, 2**28 - 1),
        ("batching.max_batch", config.batching.max_batch, 1, 4096),
        ("limits.max_payload_bytes", config.limits.max_payload_bytes, 1, 256 * 2**20),
        ("limits.max_text_bytes", config.limits.max_text_bytes, 1, 256 * 2**20),
        ("limits.max_attempts", config.limits.max_attempts, 1, 1000),
        ("results.top_k", config.results.top_k, 1, 1000),
    )
    for path, value, low, high in positive:
        if not low <= value <= high:
            raise ConfigError(f"{path}: expected an integer from {low} to {high}, got {value}")
    for index, scope in enumerate(config.models.key_scopes):
        if not re.fullmatch(r"[0-9a-f]{16}", scope.key_id):
            raise ConfigError(
                f"models.key_scopes[{index}].key_id: expected 16 lower-case hex digits "
                f"(`edge-agent model keygen` prints it), got {scope.key_id!r}"
            )
    packet_floor = config.limits.max_payload_bytes + 2**16  # topic, properties, header
    if 0 < config.broker.maximum_packet_size < packet_floor:
        raise ConfigError(
            f"broker.maximum_packet_size: expected 0 or at least limits.max_payload_bytes + 65536"
            f" ({packet_floor}), got {config.broker.maximum_packet_size}: larger payloads would"
            " vanish at the broker instead of getting a payload_too_large error"
        )
    for path, number in (
        ("batching.max_wait_ms", config.batching.max_wait_ms),
        ("broker.reconnect_min_s", config.broker.reconnect_min_s),
        ("stats_interval_s", config.stats_interval_s),
        ("shutdown_timeout_s", config.shutdown_timeout_s),
    ):
        if number < 0:
            raise ConfigError(f"{path}: expected a number >= 0, got {number}")
    if config.broker.reconnect_max_s < config.broker.reconnect_min_s:
        raise ConfigError("broker.reconnect_max_s: expected a number >= broker.reconnect_min_s")
    for path, count in (
        ("models.threads", config.models.threads),
        ("batching.workers", config.batching.workers),
    ):
        if count is not None and not 1 <= count <= 256:
            raise ConfigError(f"{path}: expected null or an integer from 1 to 256, got {count}")
    secrets = [
        name
        for name in ("password_file", "password_env", "credential")
        if getattr(config.broker, name) is not None
    ]
    if len(secrets) > 1:
        raise ConfigError(
            "broker: expected at most one of password_file, password_env, credential, "
            f"got {secrets}"
        )
    for index, route in enumerate(config.routes):
        where = f"routes[{index}]"
        problem = routing.filter_problem(route.subscribe)
        if problem:
            raise ConfigError(f"{where}.subscribe: {problem}, got {route.subscribe!r}")
        problem = routing.template_problem(route.publish)
        if problem:
            raise ConfigError(f"{where}.publish: {problem}, got {route.publish!r}")
        if route.group is not None and not routing.is_plain_level(route.group):
            raise ConfigError(
                f"{where}.group: expected a name without + # / or NUL, got {route.group!r}"
            )
        if routing.feeds_itself(route.subscribe, route.publish):
            raise ConfigError(
                f"{where}.publish: results on {route.publish!r} would match the route's own "
                f"filter {route.subscribe!r} and be classified again"
            )
        check_route_output(route, where)
        if route.examples is not None and not route.examples.strip():
            raise ConfigError(f"{where}.examples: expected a file path, got {route.examples!r}")
    for index, pattern in enumerate(config.results.response_topics):
        problem = routing.filter_problem(config.topic(pattern))
        if problem or pattern.startswith("$"):
            raise ConfigError(
                f"results.response_topics[{index}]: {problem or 'expected no $ topic'}, "
                f"got {pattern!r}"
            )
    for name in ("status", "stats", "errors", "dead_letter"):
        topic = config.topic(getattr(config.topics, name))
        problem = routing.topic_problem(topic)
        if problem:
            raise ConfigError(f"topics.{name}: {problem}, got {topic!r}")
    check_integrations(config)
