"""MQTT over any transport: paho-mqtt 2.x through a socketpair tunnel (see ``session`` for the API)."""

from nrfprov.iotcore import parse_rejected
from nrfprov.mqtt.session import Message, MqttSession

__all__ = ["Message", "MqttSession", "parse_rejected"]
