"""What the client holds AWS IoT Core to, in one place: its limits and the ``rejected`` reply.

Limits [AWS IoT Core endpoints and quotas, "AWS IoT Core message broker and protocol limits and
quotas"]: a PUBLISH payload is at most 128 KB, a client ID at most 128 bytes; AWS's own device SDKs
put at most 8 subscriptions in one SUBSCRIBE [aws-iot-device-sdk-js-v2, mqtt5 AwsIotCoreDefaults].

Every Fleet Provisioning API answers a refused request on ``<request topic>/rejected`` with
``{"statusCode", "errorCode", "errorMessage"}`` in the request's format [AWS IoT developer guide,
"Device provisioning MQTT API"]; the split-topic workaround uses the same shape in JSON.
:func:`parse_rejected` is the one parser of that reply.
"""

from __future__ import annotations

import json
from typing import Final

import cbor2

from nrfprov.errors import CloudRejected
from nrfprov.names import PayloadFormat

#: The largest PUBLISH payload AWS IoT Core accepts: nothing larger can be a genuine reply.
PAYLOAD_LIMIT: Final = 128 * 1024
#: The longest client ID AWS IoT Core accepts, in bytes of UTF-8.
CLIENT_ID_LIMIT: Final = 128
#: Subscriptions sent in one SUBSCRIBE; longer lists are split.
SUBSCRIPTIONS_PER_PACKET: Final = 8
#: How much of an unparsable rejected body the error shows.
_SHOWN = 200


def parse_rejected(topic: str, payload: bytes, fmt: PayloadFormat = "json") -> CloudRejected:
    """The typed error for a ``rejected`` reply. A body that is not the documented object (too large,
    not JSON/CBOR, not a map) is still a refusal: ``error_code`` "Unparseable", its start as message."""
    body: object = None
    if len(payload) <= PAYLOAD_LIMIT:
        try:
            body = cbor2.loads(payload) if fmt == "cbor" else json.loads(payload)
        except (ValueError, cbor2.CBORDecodeError):  # UnicodeDecodeError is a ValueError
            body = None
    if not isinstance(body, dict):
        return CloudRejected(topic, None, "Unparseable", payload[:_SHOWN].decode("utf-8", "replace"))
    status = body.get("statusCode")
    return CloudRejected(
        topic,
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        str(body.get("errorCode", "")),
        str(body.get("errorMessage", "")),
    )
