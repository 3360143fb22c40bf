"""Home Assistant's MQTT discovery schema, as its documentation states it, checked field by
field; and the documentation's own example payloads, which the checker must accept.

Source: home-assistant.io, source/_integrations/mqtt.markdown ("Device discovery payload",
"Discovery topic"), sensor.mqtt (enum sensors: `options`, not with `state_class` or
`unit_of_measurement`) and event.mqtt (`event_types` and `state_topic` required). Unknown
keys are allowed by Home Assistant but ignored, so a misspelt key would silently do
nothing: the checker therefore accepts only keys the documentation lists.
"""

from __future__ import annotations

import re
from typing import Any, Final

OBJECT_ID: Final = re.compile(r"[a-zA-Z0-9_-]+")

DEVICE_KEYS: Final = {
    "ids", "identifiers", "cns", "connections", "name", "mf", "manufacturer", "mdl", "model",
    "mdl_id", "model_id", "sw", "sw_version", "hw", "hw_version", "sn", "serial_number",
    "sa", "suggested_area", "cu", "configuration_url", "via_device",
}  # fmt: skip
ORIGIN_KEYS: Final = {"name", "sw", "sw_version", "url", "support_url"}
# Shared options at the root of a device payload (besides dev, o and the components).
SHARED_KEYS: Final = {
    "availability", "avty", "availability_topic", "avty_t", "availability_mode",
    "avty_mode", "availability_template", "avty_tpl", "payload_available", "pl_avail",
    "payload_not_available", "pl_not_avail", "command_topic", "cmd_t", "state_topic",
    "stat_t", "qos", "encoding", "e",
}  # fmt: skip
AVAILABILITY_KEYS: Final = {"topic", "t", "payload_available", "pl_avail",
    "payload_not_available", "pl_not_avail", "value_template", "val_tpl"}  # fmt: skip
ENTITY_KEYS: Final = {
    "p", "platform", "unique_id", "uniq_id", "name", "object_id", "default_entity_id",
    "icon", "ic", "entity_category", "ent_cat", "enabled_by_default", "en", "device_class",
    "dev_cla", "state_topic", "stat_t", "value_template", "val_tpl", "json_attributes_topic",
    "json_attr_t", "json_attributes_template", "json_attr_tpl", "qos", "encoding", "e",
    "availability", "avty", "availability_topic", "avty_t", "availability_mode", "avty_mode",
    "availability_template", "avty_tpl", "payload_available", "pl_avail",
    "payload_not_available", "pl_not_avail", "entity_picture", "ent_pic",
}  # fmt: skip
PLATFORM_KEYS: Final = {
    "sensor": {"options", "ops", "state_class", "stat_cla", "unit_of_measurement",
        "unit_of_meas", "expire_after", "exp_aft", "force_update", "frc_upd",
        "last_reset_value_template", "lrst_val_tpl", "suggested_display_precision",
        "sug_dsp_prc"},
    "event": {"event_types", "evt_typ"},
    "binary_sensor": {"payload_on", "pl_on", "payload_off", "pl_off", "expire_after",
        "off_delay"},
    "device_automation": {"automation_type", "atype", "payload", "pl", "topic", "t", "type",
        "subtype", "stype"},
    "tag": {"topic", "t"},
    "switch": {"command_topic", "cmd_t", "payload_on", "pl_on", "payload_off", "pl_off",
        "state_on", "stat_on", "state_off", "stat_off", "optimistic", "opt", "retain", "ret"},
}  # fmt: skip
NOT_ENTITIES: Final = {"device_automation", "tag"}  # the only components without unique_id
ENTITY_CATEGORIES: Final = {"config", "diagnostic"}


def check_discovery_topic(topic: str, prefix: str = "homeassistant") -> None:
    """`<prefix>/device/[<node_id>/]<object_id>/config`, ids in [a-zA-Z0-9_-]."""
    assert topic.startswith(prefix + "/"), topic
    levels = topic[len(prefix) + 1 :].split("/")
    assert levels[0] == "device" and levels[-1] == "config", topic
    assert len(levels) in (3, 4), topic
    for level in levels[1:-1]:
        assert OBJECT_ID.fullmatch(level), f"{level!r} is not [a-zA-Z0-9_-]"


def check_device_payload(payload: Any) -> None:
    """Raise AssertionError naming the first field that breaks the documented schema."""
    assert isinstance(payload, dict), "a device payload is a JSON object"
    device = _one_of(payload, "dev", "device")
    origin = _one_of(payload, "o", "origin")
    components = _one_of(payload, "cmps", "cmp", "components")
    named = {"dev", "device", "o", "origin", "cmps", "cmp", "components"}
    for key in payload:
        assert key in named | SHARED_KEYS, f"{key!r} is not a shared device option"
    _check_device(device)
    assert isinstance(origin, dict), "o: a mapping"
    assert isinstance(origin.get("name"), str) and origin["name"], "o.name: required string"
    for key in origin:
        assert key in ORIGIN_KEYS, f"o.{key}: not an origin option"
    _check_availability(payload, "")
    assert isinstance(components, dict) and components, "cmps: a non-empty mapping"
    shared_state = payload.get("state_topic", payload.get("stat_t"))
    for component_id, config in components.items():
        assert OBJECT_ID.fullmatch(component_id), f"cmps: id {component_id!r} not [a-zA-Z0-9_-]"
        _check_component(f"cmps.{component_id}", config, shared_state)


def _one_of(payload: dict[str, Any], *names: str) -> Any:
    present = [name for name in names if name in payload]
    assert len(present) == 1, f"exactly one of {names} is required, got {present}"
    return payload[present[0]]


def _check_device(device: Any) -> None:
    assert isinstance(device, dict), "dev: a mapping"
    for key in device:
        assert key in DEVICE_KEYS, f"dev.{key}: not a device option"
    ids = device.get("ids", device.get("identifiers"))
    connections = device.get("cns", device.get("connections"))
    assert ids is not None or connections is not None, "dev: identifiers or connections"
    if ids is not None:
        assert isinstance(ids, str) or (
            isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)
        ), "dev.ids: a string or a list of strings"
    for key in ("name", "mf", "mdl", "sw", "hw", "sn"):
        if key in device:
            assert isinstance(device[key], str), f"dev.{key}: a string"


def _check_availability(config: dict[str, Any], where: str) -> None:
    entries = config.get("availability", config.get("avty"))
    if entries is None:
        return
    assert "availability_topic" not in config, f"{where}availability with availability_topic"
    assert isinstance(entries, list) and entries, f"{where}availability: a non-empty list"
    for index, entry in enumerate(entries):
        assert isinstance(entry, dict), f"{where}availability[{index}]: a mapping"
        assert isinstance(entry.get("topic", entry.get("t")), str), (
            f"{where}availability[{index}].topic: required"
        )
        for key in entry:
            assert key in AVAILABILITY_KEYS, f"{where}availability[{index}].{key}: unknown"


def _check_component(where: str, config: Any, shared_state: Any) -> None:
    assert isinstance(config, dict), f"{where}: a mapping"
    platform = config.get("p", config.get("platform"))
    assert platform in PLATFORM_KEYS, f"{where}.p: a supported platform, got {platform!r}"
    if set(config) <= {"p", "platform"}:
        return  # platform only: the documented way to remove one component
    for key in config:
        assert key in ENTITY_KEYS | PLATFORM_KEYS[platform], (
            f"{where}.{key}: not a {platform} option"
        )
    if platform in NOT_ENTITIES:
        return
    unique_id = config.get("unique_id", config.get("uniq_id"))
    assert isinstance(unique_id, str) and unique_id, f"{where}.unique_id: required for entities"
    category = config.get("entity_category", config.get("ent_cat"))
    assert category is None or category in ENTITY_CATEGORIES, f"{where}.entity_category"
    _check_availability(config, where + ".")
    state_topic = config.get("state_topic", config.get("stat_t", shared_state))
    if platform == "sensor":
        _check_sensor(where, config)
    if platform == "event":
        assert isinstance(state_topic, str) and state_topic, f"{where}.state_topic: required"
        types = config.get("event_types", config.get("evt_typ"))
        assert isinstance(types, list) and types, f"{where}.event_types: a non-empty list"
        assert all(isinstance(t, str) for t in types), f"{where}.event_types: strings"


def _check_sensor(where: str, config: dict[str, Any]) -> None:
    options = config.get("options", config.get("ops"))
    device_class = config.get("device_class", config.get("dev_cla"))
    if options is not None or device_class == "enum":
        assert device_class == "enum", f"{where}.options: needs device_class enum"
        assert isinstance(options, list) and options, f"{where}.options: a non-empty list"
        assert all(isinstance(o, str) for o in options), f"{where}.options: strings"
        assert len(set(options)) == len(options), f"{where}.options: no duplicates"
        for key in ("state_class", "stat_cla", "unit_of_measurement", "unit_of_meas"):
            assert key not in config, f"{where}.{key}: not allowed with options"
    expire = config.get("expire_after", config.get("exp_aft"))
    assert expire is None or (isinstance(expire, int) and expire > 0), f"{where}.expire_after"


# The documentation's example payloads (mqtt.markdown, "Device discovery payload"): a
# device with two sensors, the same with one reduced to its platform (removal), and the
# device payload of the migration example.
DOCS_DEVICE_EXAMPLE: Final[dict[str, Any]] = {
    "dev": {"ids": "ea334450945afc", "name": "Kitchen", "mf": "Bla electronics", "mdl": "xya",
            "sw": "1.0", "sn": "ea334450945afc", "hw": "1.0rev2"},
    "o": {"name": "bla2mqtt", "sw": "2.1", "url": "https://bla2mqtt.example.com/support"},
    "cmps": {
        "some_unique_component_id1": {"p": "sensor", "device_class": "temperature",
            "unit_of_measurement": "°C", "value_template": "{{ value_json.temperature}}",
            "unique_id": "temp01ae_t"},
        "some_unique_id2": {"p": "sensor", "device_class": "humidity",
            "unit_of_measurement": "%", "value_template": "{{ value_json.humidity}}",
            "unique_id": "temp01ae_h"},
    },
    "state_topic": "sensorBedroom/state",
    "qos": 2,
}  # fmt: skip
DOCS_REMOVAL_EXAMPLE: Final[dict[str, Any]] = {
    **DOCS_DEVICE_EXAMPLE,
    "cmps": {
        "some_unique_component_id1": DOCS_DEVICE_EXAMPLE["cmps"]["some_unique_component_id1"],
        "some_unique_id2": {"p": "sensor"},
    },
}
DOCS_MIGRATION_EXAMPLE: Final[dict[str, Any]] = {
    "device": {"identifiers": ["0AFFD2"]},
    "o": {"name": "foobar"},
    "cmps": {
        "bla1": {"p": "device_automation", "automation_type": "trigger",
                 "payload": "short_press", "topic": "foobar/triggers/button1",
                 "type": "button_short_press", "subtype": "button_1"},
        "bla2": {"p": "sensor", "state_topic": "foobar/sensor/sensor1",
                 "unique_id": "bla_sensor001"},
    },
}  # fmt: skip
DOCS_EXAMPLES: Final = (DOCS_DEVICE_EXAMPLE, DOCS_REMOVAL_EXAMPLE, DOCS_MIGRATION_EXAMPLE)
DOCS_TOPIC_EXAMPLE: Final = "homeassistant/device/0AFFD2/config"
