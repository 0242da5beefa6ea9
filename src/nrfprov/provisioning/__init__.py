"""Provisioning: Nordic's aws_iot_provisioning sample's 12-step chain, every flow, and a journal that never loses a key.

- :class:`ProvisioningMachine` / :class:`Plan` (sans-IO, ``machine``): the chain as a transition table;
  events in (``events``: ``Started``, ``MessageReceived`` ...), effects out (``WriteCredential`` ...).
- :class:`Driver` (``driver``): executes the effects on a ``nrfprov.modem.Modem``, the transports and
  MQTT; ``Driver(settings, modem, state_dir=...).run()`` → :class:`RunResult`.
- :class:`CredentialBundle` / :func:`check_bundle` (``bundle``): checks before the modem is touched.
- :class:`Journal` (``journal``): the issued bundle on disk before the first write; ``--resume``.
- ``flows``: topics, requests and reply collectors (split, combined via the C extractor, csr,
  RegisterThing).

The driver, journal, CLI and demo do I/O; everything else here is sans-IO (checked by a test).
"""

from nrfprov.provisioning.bundle import CredentialBundle, check_bundle
from nrfprov.provisioning.events import State
from nrfprov.provisioning.machine import Plan, ProvisioningMachine, ProvisioningStateError

__all__ = [
    "CredentialBundle",
    "Plan",
    "ProvisioningMachine",
    "ProvisioningStateError",
    "State",
    "check_bundle",
]
