"""Which topics are Fleet Provisioning requests and replies, and how a reply finds its requester.

AWS IoT returns Fleet Provisioning results "through the same MQTT connection used to publish the API
request" [AWS IoT developer guide, fleet-provision-api]. The broker plugin (broker_plugin.c) enforces
it: a request reaches the responder carrying one MQTT 5 user property, ``MARKER`` = the serial number of
the requesting connection; the responder publishes each reply on ``route_topic(serial, reply_topic)``
and the plugin delivers it, under its real topic, to that connection only.

The split workaround's request (``certificate/<id>/create``) is tagged as well, and every tagged request
also carries ``CLIENT_ID_MARKER`` = the requester's MQTT client ID: on AWS the topic rule's
``clientid()`` [AWS IoT developer guide, "Functions", clientid()] puts it into the event the split
handler gets, and the pre-provisioning hook's event has ``clientId`` [AWS IoT developer guide,
pre-provisioning-hook]. Its replies (``certificate/<id>/create/accepted/...``) are ordinary messages on
AWS (a Lambda publishes them; the policy binds the topic to the client ID), so they are not routed.
Any handler the responder hosts gets the same treatment: its replies on the Fleet topics are routed.
"""

from __future__ import annotations

from paho.mqtt.client import topic_matches_sub

#: User property the broker puts on each request: the requesting connection's serial (decimal).
MARKER = "nrfprov-connection"
#: User property the broker puts on each request: the requesting connection's MQTT client ID.
CLIENT_ID_MARKER = "nrfprov-client-id"
#: The responder publishes replies below this prefix; only it may write there (see acl.RESPONDER_RULES).
ROUTE_PREFIX = "nrfprov/route"

# "+" in the last level stands for the payload format, json or cbor.
_OPERATIONS = ("$aws/certificates/create/+", "$aws/certificates/create-from-csr/+",
               "$aws/provisioning-templates/+/provision/+")
#: The split workaround's request topic (the deployed rule's ``FROM 'certificate/+/create'``).
SPLIT_REQUEST_FILTER = "certificate/+/create"
#: Requests the broker tags: Fleet Provisioning [fleet-provision-api] and the split workaround.
REQUEST_FILTERS: tuple[str, ...] = (*_OPERATIONS, SPLIT_REQUEST_FILTER)
#: Their accepted / rejected replies: delivered only to the requesting connection.
REPLY_FILTERS: tuple[str, ...] = tuple(f"{op}/{kind}" for op in _OPERATIONS for kind in ("accepted", "rejected"))


def is_reply(topic: str) -> bool:
    return any(topic_matches_sub(f, topic) for f in REPLY_FILTERS)


def route_topic(serial: int, reply_topic: str) -> str:
    """Where the responder publishes ``reply_topic`` for connection ``serial``."""
    if serial <= 0:
        raise ValueError(f"connection serial must be positive, got {serial}")
    return f"{ROUTE_PREFIX}/{serial}/{reply_topic}"


def serial_from_properties(properties: object) -> int | None:
    """The connection serial the broker attached to a request (the last ``MARKER``), else None."""
    pairs = getattr(properties, "UserProperty", None) or []
    found: int | None = None
    for name, value in pairs:
        if name == MARKER and isinstance(value, str) and value.isdigit() and len(value) <= 20:
            found = int(value)
    return found if found else None


def client_id_from_properties(properties: object) -> str | None:
    """The requester's client ID the broker attached to a request (the last ``CLIENT_ID_MARKER``), else None."""
    pairs = getattr(properties, "UserProperty", None) or []
    found: str | None = None
    for name, value in pairs:
        if name == CLIENT_ID_MARKER and isinstance(value, str):
            found = value
    return found


def plugin_options(connect_interval_ms: int) -> dict[str, str]:
    """``plugin_opt_*`` values for broker_plugin.c."""
    return {
        "marker": MARKER,
        "client_marker": CLIENT_ID_MARKER,
        "route_prefix": ROUTE_PREFIX,
        "request_topics": " ".join(REQUEST_FILTERS),
        "reply_topics": " ".join(REPLY_FILTERS),
        "connect_interval_ms": str(connect_interval_ms),
    }
