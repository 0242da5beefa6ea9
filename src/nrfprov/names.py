"""The names nrfprov's domain is made of, defined once: flows, payload formats, TLS backends, dialects.

Configuration (``CONFIG_NRFPROV_*`` choices), command-line choices, the provisioning plan, the
transports and the demo all take their spelling from here, so adding a flow or a backend is one
edit and a typo is a type error (mypy checks the ``Literal`` types).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

#: How credentials are obtained (docs/architecture.md, "Flows"):
#: ``split`` - the key and the certificate as raw PEM on two topics (Nordic's aws_iot_provisioning
#: sample's workaround); ``combined`` - AWS CreateKeysAndCertificate; ``csr`` - a key made inside the
#: modem (%KEYGEN) and AWS CreateCertificateFromCsr.
Flow = Literal["split", "combined", "csr"]
FLOWS: Final[tuple[Flow, ...]] = get_args(Flow)
#: Flows that use AWS Fleet Provisioning and so need a RegisterThing template.
FLEET_FLOWS: Final[tuple[Flow, ...]] = ("combined", "csr")

#: Payload format of the Fleet Provisioning MQTT API (the topic suffix ``/json`` or ``/cbor``).
PayloadFormat = Literal["json", "cbor"]
FORMATS: Final[tuple[PayloadFormat, ...]] = get_args(PayloadFormat)

#: Who runs TLS to the broker: host Mbed TLS over the modem's TCP socket, the modem itself, or host
#: Mbed TLS over the host's own network.
Backend = Literal["native", "offload", "host"]
BACKENDS: Final[tuple[Backend, ...]] = get_args(Backend)

#: The socket command set of Nordic's serial modem application: the Serial Modem add-on (NCS >= 3.1)
#: or the legacy Serial LTE Modem (SLM, NCS 2.x).
Dialect = Literal["sm", "slm"]
DIALECTS: Final[tuple[Dialect, ...]] = get_args(Dialect)
#: What configuration may ask for: a dialect, or ``auto`` (probe the modem).
DialectChoice = Literal["auto", "sm", "slm"]
DIALECT_CHOICES: Final[tuple[DialectChoice, ...]] = get_args(DialectChoice)

#: Radio profiles of the simulated nRF91 (``nrfprov sim --network``, ``nrfprov demo --network``): no
#: delay, or typical LTE-M / NB-IoT round-trip times and rates (figures and sources in sim/network.py).
NetworkName = Literal["ideal", "lte-m", "nb-iot"]
NETWORKS: Final[tuple[NetworkName, ...]] = get_args(NetworkName)
