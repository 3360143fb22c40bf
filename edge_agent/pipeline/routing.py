"""Topic rules, pure: filter matching, output-topic templates, and the checks that keep
payload content from ever choosing where a result is published.

Output topics are rendered only from the configured template and the topic the broker
delivered on (which MQTT guarantees holds no wildcards or NUL); nothing from a payload is
ever substituted. Shared subscriptions (`$share/<group>/<filter>`) match like their filter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from edge_agent.pipeline.output import OutputPolicy

if TYPE_CHECKING:  # messages imports this module for its topic-level rule
    from edge_agent.pipeline.messages import InputSpec

PLACEHOLDERS: Final = frozenset({"topic", "model", "client_id"})
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
MAX_TOPIC_BYTES: Final = 65535  # MQTT strings carry a two-byte length
# mosquitto (2.0) refuses a PUBLISH whose topic has more than 200 separators, 201 levels,
# and drops the connection for it (measured: 201 levels accepted, 202 DISCONNECT 130).
MAX_TOPIC_LEVELS: Final = 201


@dataclass(frozen=True)
class Route:
    """One configured route, resolved: everything the pipeline needs to serve it."""

    index: int  # position in the config; index + 1 is its MQTT 5 Subscription Identifier
    filter: str  # the plain topic filter, without any $share prefix
    model: str
    publish: str  # output topic template
    group: str | None
    spec: InputSpec  # how its payloads are read
    qos: int  # of its results
    # retain, on_change, payload form, fields, min_score (frozen; a factory for ruff's sake)
    output: OutputPolicy = field(default_factory=OutputPolicy)
    # The examples file whose labels `model` (an encoder) answers, or None for a classifier.
    examples: str | None = None

    @property
    def served_by(self) -> str:
        """What labels this route's messages: the model, or its label set (the key
        edge_agent/models/label_sets.py files it under)."""
        return f"{self.model}+{self.examples}" if self.examples else self.model

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.filter}" if self.group else self.filter

    @property
    def has_wildcards(self) -> bool:
        return "+" in self.filter or "#" in self.filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching, including the rule that wildcards at the first level do not
    match topics starting with `$` (so `#` never swallows `$SYS`)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


def render(template: str, *, topic: str, model: str, client_id: str) -> str:
    """Fill an output template. Only the three known placeholders exist; each is replaced
    textually so braces in a delivered topic cannot be re-interpreted as placeholders."""
    values = {"topic": topic, "model": model, "client_id": client_id}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def route_for(
    routes: tuple[Route, ...], topic: str, subscription_ids: tuple[int, ...]
) -> list[Route]:
    """Routes that a delivered message belongs to.

    With MQTT 5 each route subscribes with its own Subscription Identifier (index + 1), so
    the broker says exactly which routes matched. Without identifiers (MQTT 3.1.1) the
    first route whose filter matches wins, because overlapping subscriptions may each get
    their own copy of the message and each copy must be labelled once, not once per route.
    """
    if subscription_ids:
        by_id = {route.index + 1: route for route in routes}
        chosen = [by_id[number] for number in subscription_ids if number in by_id]
        if chosen:
            return chosen
    for route in routes:
        if topic_matches(route.filter, topic):
            return [route]
    return []


def response_topic_allowed(topic: str, allowed: Sequence[str], reserved: Sequence[str]) -> bool:
    """Whether a request's MQTT 5 Response Topic may receive its answer.

    The Response Topic comes from whoever published the request, so it must not steer the
    agent's publishes anywhere its broker login may write: only topics matching one of the
    `allowed` filters, never a `$` topic, never one matching a `reserved` filter (the agent's
    own status, errors, dead-letter, stats and OTA topics)."""
    if topic_problem(topic) is not None or topic.startswith("$"):
        return False
    if any(topic_matches(pattern, topic) for pattern in reserved):
        return False
    return any(topic_matches(pattern, topic) for pattern in allowed)


def filter_problem(topic_filter: str) -> str | None:
    """Why a subscription filter is invalid, or None."""
    if topic_filter.startswith("$share/"):
        return "expected a plain filter; set `group` for a shared subscription"
    base = topic_problem(topic_filter, allow_wildcards=True)
    if base:
        return base
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "expected '#' only as a whole last level"
        if "+" in level and level != "+":
            return "expected '+' only as a whole level"
    return None


def topic_problem(topic: str, *, allow_wildcards: bool = False) -> str | None:
    """Why a concrete topic (or, with allow_wildcards, a filter) is invalid, or None."""
    if not topic:
        return "expected a non-empty topic"
    if "\x00" in topic:
        return "expected no NUL character"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "expected at most 65535 bytes"
    if not allow_wildcards and ("+" in topic or "#" in topic):
        return "expected no wildcard (+ or #)"
    return None


def output_topic_problem(topic: str) -> str | None:
    """Why a rendered output topic would be refused by the protocol or the broker, or None."""
    problem = topic_problem(topic)
    if problem is not None:
        return problem
    if topic.count("/") + 1 > MAX_TOPIC_LEVELS:
        return f"expected at most {MAX_TOPIC_LEVELS} levels, got {topic.count('/') + 1}"
    return None


def template_problem(template: str) -> str | None:
    """Why an output template is invalid, or None."""
    names = set(_PLACEHOLDER.findall(template))
    unknown = names - PLACEHOLDERS
    if unknown:
        found = sorted(unknown)[0]
        return f"expected only placeholders {{topic}}, {{model}}, {{client_id}}, found {{{found}}}"
    stripped = _PLACEHOLDER.sub("x", template)
    if "{" in stripped or "}" in stripped:
        return "expected balanced {placeholder} braces"
    return topic_problem(stripped)


def is_plain_level(name: str) -> bool:
    """True for a single topic level usable as a shared-subscription group or an id."""
    return bool(name) and not any(char in name for char in "+#/\x00")


def feeds_itself(topic_filter: str, template: str) -> bool:
    """True when results rendered from a matching topic would match the filter again.

    Checked with a representative topic built from the filter (each `+` as one level,
    `#` as one level), which catches the usual mistakes (`chat/#` -> `{topic}/label`)
    without pretending to be a full proof.
    """
    sample = topic_filter.replace("#", "x").replace("+", "x")
    rendered = render(template, topic=sample, model="model", client_id="client")
    return topic_matches(topic_filter, rendered)
