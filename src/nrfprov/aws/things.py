"""``reprovision``: an operator's permission for one more certificate for an existing thing.

The handler refuses a certificate for a thing that already has an active one. This records the
exception as the thing attribute ``nrfprov_reprovision`` = expiry (epoch seconds); the next request
for the thing uses it up and the handler deactivates the old certificates once the new one is out.
A thing attribute is readable and writable with the registry calls the handler already makes
(DescribeThing, UpdateThing), and shows in the console next to the thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nrfprov.aws.handler import REPROVISION_ATTRIBUTE, THING_NAME_RE, Config, Issuer, error_code
from nrfprov.aws.session import Clients, aws_errors
from nrfprov.errors import UsageError

DEFAULT_HOURS = 24.0


@dataclass(frozen=True)
class ReprovisionResult:
    thing: str
    expires_at: float
    active_certificates: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"thing": self.thing, "expiresAt": int(self.expires_at),
                "activeCertificates": list(self.active_certificates)}


@aws_errors
def allow_reprovision(clients: Clients, thing: str, *, hours: float = DEFAULT_HOURS,
                      clock: Callable[[], float] = time.time) -> ReprovisionResult:
    if THING_NAME_RE.fullmatch(thing) is None:
        raise UsageError(f"{thing!r} is not a thing name", hint="1-128 characters of a-z A-Z 0-9 : _ -")
    if not 0 < hours <= 24 * 30:
        raise UsageError("--hours must be more than 0 and at most 720 (30 days)")
    try:
        doc = clients.iot.describe_thing(thingName=thing)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise UsageError(f"there is no thing {thing} in {clients.region}",
                             hint="a device's first provisioning needs no permission") from exc
        raise
    expires = clock() + hours * 3600
    clients.iot.update_thing(thingName=thing, expectedVersion=int(doc.get("version", 1)),
                             attributePayload={"attributes": {REPROVISION_ATTRIBUTE: str(int(expires))},
                                               "merge": True})
    active = Issuer(clients.iot, None, Config(device_policy="-")).active_principals(thing)
    return ReprovisionResult(thing, float(int(expires)), tuple(active))
