"""The provisioning chain as data: which step may follow which, on which event, and what a run plans.

``_TRANSITIONS`` is the table the machine (``machine.py``) enforces; :class:`Plan` says which of
its paths a run takes (fresh, resumed, resumed with RegisterThing in doubt). Sans-IO.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from nrfprov.errors import LocalProtocolError
from nrfprov.names import FLOWS, FORMATS, Flow, PayloadFormat
from nrfprov.provisioning.bundle import CredentialBundle
from nrfprov.provisioning.events import (
    Connected,
    CredentialDeleted,
    CredentialWritten,
    Disconnected,
    Event,
    FunctionalModeSet,
    KeyGenerated,
    LteRegistered,
    MessageReceived,
    ProbeFailed,
    Published,
    ReplySaved,
    Resumed,
    Started,
    State,
    Subscribed,
    SubscriptionsCleared,
)


class ProvisioningStateError(LocalProtocolError):
    """An event arrived that the current step does not accept (a driver bug, never a user error)."""


S = State
# state → {event type accepted → the states that may follow once the step is complete}.
_TRANSITIONS: dict[State, dict[type[Event], tuple[State, ...]]] = {
    S.IDLE: {Started: (S.GENERATE_KEY, S.ATTACH_LTE), Resumed: (S.ATTACH_LTE, S.GO_OFFLINE)},
    S.GENERATE_KEY: {FunctionalModeSet: (S.ATTACH_LTE,), CredentialDeleted: (S.ATTACH_LTE,),
                     KeyGenerated: (S.ATTACH_LTE,)},
    S.ATTACH_LTE: {FunctionalModeSet: (S.CONNECT_CLAIM,), LteRegistered: (S.CONNECT_CLAIM,)},
    S.CONNECT_CLAIM: {Connected: (S.SUBSCRIBE,)},
    S.SUBSCRIBE: {Subscribed: (S.REQUEST_CREDENTIALS, S.REQUEST_REGISTRATION)},
    # Replies may overtake the PUBACK (ordering is not guaranteed [AWS IoT developer guide, mqtt]): buffered.
    S.REQUEST_CREDENTIALS: {Published: (S.AWAIT_CREDENTIALS,), MessageReceived: (S.AWAIT_CREDENTIALS,)},
    S.AWAIT_CREDENTIALS: {MessageReceived: (S.REQUEST_REGISTRATION, S.DISCONNECT_CLAIM),
                          ReplySaved: (S.REQUEST_REGISTRATION, S.DISCONNECT_CLAIM)},
    S.REQUEST_REGISTRATION: {Published: (S.AWAIT_REGISTRATION,), MessageReceived: (S.AWAIT_REGISTRATION,)},
    S.AWAIT_REGISTRATION: {MessageReceived: (S.DISCONNECT_CLAIM,)},
    # After a RegisterThing made on resume (the credentials are written already): straight to the proof.
    S.DISCONNECT_CLAIM: {Disconnected: (S.GO_OFFLINE, S.RECONNECT)},
    S.GO_OFFLINE: {FunctionalModeSet: (S.WRITE_CREDENTIALS,)},
    S.WRITE_CREDENTIALS: {CredentialDeleted: (S.CLEAR_SUBSCRIPTIONS,), CredentialWritten: (S.CLEAR_SUBSCRIPTIONS,)},
    S.CLEAR_SUBSCRIPTIONS: {SubscriptionsCleared: (S.GO_ONLINE,)},
    S.GO_ONLINE: {FunctionalModeSet: (S.RECONNECT, S.PROBE_IDENTITY),
                  LteRegistered: (S.RECONNECT, S.PROBE_IDENTITY)},
    # RegisterThing in doubt: a working new identity proves the registration (→ done); otherwise
    # register now with the journaled token (→ claim connect).
    S.PROBE_IDENTITY: {Connected: (S.DONE,), Published: (S.DONE,), Disconnected: (S.DONE,),
                       ProbeFailed: (S.CONNECT_CLAIM,)},
    S.RECONNECT: {Connected: (S.DONE,), Published: (S.DONE,), Disconnected: (S.DONE,)},
    S.DONE: {},
    S.FAILED: {},
}

_CHAIN_TAIL = [S.GO_OFFLINE, S.WRITE_CREDENTIALS, S.CLEAR_SUBSCRIPTIONS, S.GO_ONLINE, S.RECONNECT, S.DONE]
_REGISTER = [S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_REGISTRATION, S.AWAIT_REGISTRATION, S.DISCONNECT_CLAIM]


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to know up front (the driver builds it from Settings + the modem)."""

    flow: Flow
    client_id: str
    provisioned_sec_tag: int
    ca_pem: str
    claim_sec_tag: int | None = None
    payload_format: PayloadFormat = "json"
    template: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    response_timeout: float = 60.0
    lte_timeout: float = 300.0
    #: A journaled bundle to continue with instead of requesting credentials (``--resume``).
    resume: CredentialBundle | None = None
    #: Raw replies journaled before a crash stopped their parsing: the bundle is made from them.
    journaled_replies: tuple[tuple[str, bytes], ...] = ()
    #: csr, resumed from journaled replies: the CSR's public key (DER) the certificate must carry.
    csr_public_key: bytes | None = None
    #: The RegisterThing request may have been sent, its reply never journaled (``--resume``).
    register_in_doubt: bool = False
    #: Thing names to try when the registration is in doubt, most likely first.
    thing_candidates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r}")
        if self.payload_format not in FORMATS:
            raise ValueError(f"unknown payload format {self.payload_format!r}")

    @property
    def registers(self) -> bool:
        return bool(self.template) and self.flow != "split"

    @property
    def resumes(self) -> bool:
        return self.resume is not None or bool(self.journaled_replies)

    def steps(self) -> list[State]:
        """The states this run visits, in order (a proven probe leaves the rest out)."""
        if self.resumes:
            named = self.resume is not None and bool(self.resume.thing_name)
            if self.registers and not named and self.register_in_doubt:
                return [S.IDLE, *_CHAIN_TAIL[:4], S.PROBE_IDENTITY, *_REGISTER, S.RECONNECT, S.DONE]
            if self.registers and not named:
                return [S.IDLE, S.ATTACH_LTE, *_REGISTER, *_CHAIN_TAIL]
            return [S.IDLE, *_CHAIN_TAIL]
        head = [S.IDLE] + ([S.GENERATE_KEY] if self.flow == "csr" else [])
        middle = [S.ATTACH_LTE, S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_CREDENTIALS, S.AWAIT_CREDENTIALS]
        register = [S.REQUEST_REGISTRATION, S.AWAIT_REGISTRATION] if self.registers else []
        return head + middle + register + [S.DISCONNECT_CLAIM, *_CHAIN_TAIL]


def check_plan(steps: list[State]) -> None:
    """Every consecutive pair must be allowed by ``_TRANSITIONS`` (used at start and in tests)."""
    for a, b in itertools.pairwise(steps):
        if not any(b in nxt for nxt in _TRANSITIONS[a].values()):
            raise ProvisioningStateError(f"the chain cannot go from {a.name} to {b.name}")


# Steps that finish when their last effect is answered (the await steps finish on a reply instead;
# a probe finishes when its proof's session has closed, or moves on when it failed).
_SELF_COMPLETING = frozenset({
    S.GENERATE_KEY, S.ATTACH_LTE, S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_CREDENTIALS, S.REQUEST_REGISTRATION,
    S.DISCONNECT_CLAIM, S.GO_OFFLINE, S.WRITE_CREDENTIALS, S.CLEAR_SUBSCRIPTIONS, S.GO_ONLINE, S.RECONNECT,
})
_AWAITS = frozenset({S.AWAIT_CREDENTIALS, S.AWAIT_REGISTRATION})
#: Replies that may overtake a PUBACK; a request has one or two (split), so 16 is generous.
_BUFFERED_LIMIT = 16
