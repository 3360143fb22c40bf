"""Topic matching and output templates."""

from __future__ import annotations

import pytest

from edge_agent.pipeline import routing
from edge_agent.pipeline.messages import InputSpec


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("chat/+/text", "chat/room1/text", True),
        ("chat/+/text", "chat/room1/text/label", False),
        ("chat/#", "chat", True),
        ("chat/#", "chat/a/b", True),
        ("#", "$SYS/broker", False),
        ("+/x", "$SYS/x", False),
        ("a/b", "a/b", True),
        ("a/+", "a/", True),
        ("a/+", "a", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert routing.topic_matches(topic_filter, topic) is expected


def test_render_never_reinterprets_topic_content() -> None:
    rendered = routing.render("{topic}/label", topic="a/{model}", model="m", client_id="c")
    assert rendered == "a/{model}/label"
    assert (
        routing.render("out/{client_id}/{model}", topic="t", model="m", client_id="c") == "out/c/m"
    )


def test_route_for_uses_subscription_ids_then_filters() -> None:
    routes = (
        routing.Route(0, "a/+", "m1", "{topic}/l", None, InputSpec(), qos=1),
        routing.Route(1, "a/#", "m2", "{topic}/l", "g", InputSpec(), qos=1),
    )
    assert [r.model for r in routing.route_for(routes, "a/b", (2,))] == ["m2"]
    assert [r.model for r in routing.route_for(routes, "a/b", (1, 2))] == ["m1", "m2"]
    assert [r.model for r in routing.route_for(routes, "a/b", ())] == ["m1"]
    assert routing.route_for(routes, "z", ()) == []
    assert routes[1].subscription == "$share/g/a/#"


def test_feeds_itself() -> None:
    assert routing.feeds_itself("chat/#", "{topic}/label")
    assert not routing.feeds_itself("chat/+/text", "{topic}/label")


def test_topic_problem() -> None:
    assert routing.topic_problem("a/b") is None
    assert routing.topic_problem("a/+") is not None
    assert routing.topic_problem("a\x00b") is not None
    assert routing.topic_problem("") is not None


def test_output_topics_the_broker_would_refuse_are_named() -> None:
    assert routing.output_topic_problem("/".join(["a"] * 201)) is None
    assert "201 levels" in str(routing.output_topic_problem("/".join(["a"] * 202)))
    assert routing.output_topic_problem("a/+/b") is not None
    assert routing.output_topic_problem("x" * 70000) is not None


def test_response_topics_are_allowed_only_by_filter_and_never_onto_reserved_ones() -> None:
    allowed = ("edge-agent/pi/reply/#",)
    reserved = ("edge-agent/pi/status", "edge-agent/pi/status/#", "edge-agent/ota/#")
    assert routing.response_topic_allowed("edge-agent/pi/reply/1", allowed, reserved)
    assert not routing.response_topic_allowed("edge-agent/pi/status", allowed, reserved)
    assert not routing.response_topic_allowed("other/in/x", allowed, reserved)
    # whatever the allowed filters say: never $ topics, never the agent's own
    anything = ("#",)
    assert not routing.response_topic_allowed("edge-agent/pi/status/events", anything, reserved)
    assert not routing.response_topic_allowed("edge-agent/ota/device/pi/report", anything, reserved)
    assert not routing.response_topic_allowed("$SYS/x", anything, reserved)
    assert not routing.response_topic_allowed("bad/+/wildcard", anything, reserved)
    assert routing.response_topic_allowed("somewhere/else", anything, reserved)
