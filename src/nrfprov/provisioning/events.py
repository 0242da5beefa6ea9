"""Events (past tense: what happened) and effects (imperatives: what to do) of the provisioning
machine. Frozen dataclasses; reprs hide key material and payloads."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import ClassVar

from nrfprov.provisioning.bundle import CredentialBundle


class State(enum.Enum):
    IDLE = "idle"
    GENERATE_KEY = "generate key"  # csr: CFUN=4, clean the tag, %KEYGEN
    ATTACH_LTE = "LTE up"  # 1
    CONNECT_CLAIM = "claim connect"  # 2
    SUBSCRIBE = "subscribe"  # 3
    REQUEST_CREDENTIALS = "request"  # 4
    AWAIT_CREDENTIALS = "receive"  # 5, 6
    REQUEST_REGISTRATION = "register thing"
    AWAIT_REGISTRATION = "registered"
    PROBE_IDENTITY = "try new identity"  # resume with RegisterThing in doubt: does the new identity work?
    DISCONNECT_CLAIM = "disconnect"  # 7
    GO_OFFLINE = "CFUN=4"  # 8
    WRITE_CREDENTIALS = "write credentials"  # 9
    CLEAR_SUBSCRIPTIONS = "clear subscriptions"  # 10
    GO_ONLINE = "CFUN=1"  # 11
    RECONNECT = "reconnect"  # 12
    DONE = "done"
    FAILED = "failed"


class Identity(enum.Enum):
    CLAIM = "claim"
    PROVISIONED = "provisioned"


# --- events (past tense) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class Started(Event):
    utc: _dt.datetime


@dataclass(frozen=True)
class Resumed(Event):
    utc: _dt.datetime


@dataclass(frozen=True)
class FunctionalModeSet(Event):
    mode: int


@dataclass(frozen=True)
class LteRegistered(Event):
    pass


@dataclass(frozen=True)
class KeyGenerated(Event):
    csr_der: bytes


@dataclass(frozen=True)
class Connected(Event):
    pass


@dataclass(frozen=True)
class Subscribed(Event):
    pass


@dataclass(frozen=True)
class Published(Event):
    pass


@dataclass(frozen=True)
class MessageReceived(Event):
    topic: str
    payload: bytes = field(repr=False)
    utc: _dt.datetime
    #: Delivered with the MQTT RETAIN flag: it was stored before this subscription, so it cannot be a
    #: reply to a request this run publishes later.
    retained: bool = False


@dataclass(frozen=True)
class ReplySaved(Event):
    """The raw reply of a ``SaveReply`` is durable in the journal."""


@dataclass(frozen=True)
class ProbeFailed(Event):
    """A ``probe`` connection or its proof publish failed. ``stage`` is ``"connect"`` (TLS, CONNECT:
    the certificate may not be active yet) or ``"publish"`` (the broker took the identity but refused
    the thing's topic: the certificate is active, the thing name is another)."""

    stage: str
    reason: str


@dataclass(frozen=True)
class Disconnected(Event):
    pass


@dataclass(frozen=True)
class CredentialDeleted(Event):
    sec_tag: int
    cred_type: int


@dataclass(frozen=True)
class CredentialWritten(Event):
    sec_tag: int
    cred_type: int
    sha256: str


@dataclass(frozen=True)
class SubscriptionsCleared(Event):
    pass


# --- effects (imperatives) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    #: The event type the driver must feed back after executing this; None for notes.
    completed_by: ClassVar[type[Event] | None] = None


@dataclass(frozen=True)
class SetFunctionalMode(Effect):
    mode: int
    completed_by = FunctionalModeSet


@dataclass(frozen=True)
class WaitForRegistration(Effect):
    timeout: float
    completed_by = LteRegistered


@dataclass(frozen=True)
class DeleteCredential(Effect):
    sec_tag: int
    cred_type: int
    completed_by = CredentialDeleted


@dataclass(frozen=True)
class GenerateKey(Effect):
    sec_tag: int
    completed_by = KeyGenerated


@dataclass(frozen=True)
class WriteCredential(Effect):
    sec_tag: int
    cred_type: int
    content: str = field(repr=False)
    completed_by = CredentialWritten


@dataclass(frozen=True)
class ConnectMqtt(Effect):
    identity: Identity
    client_id: str
    sec_tag: int | None
    #: Credentials for a host-side TLS reconnect (native backend); None for the claim identity.
    bundle: CredentialBundle | None = None
    #: A probe: a failure is answered with ``ProbeFailed`` instead of ending the run.
    probe: bool = False
    completed_by = Connected


@dataclass(frozen=True)
class Subscribe(Effect):
    topics: tuple[str, ...]
    completed_by = Subscribed


@dataclass(frozen=True)
class Publish(Effect):
    topic: str
    payload: bytes = field(repr=False)  # a RegisterThing request carries the ownership token
    qos: int = 1
    #: Reply topics: messages already waiting on them arrived before this request was sent, so they
    #: cannot be its replies; the driver drops them (and says so) before it publishes.
    discard_queued: tuple[str, ...] = ()
    #: A probe: a refusal is answered with ``ProbeFailed`` instead of ending the run.
    probe: bool = False
    completed_by = Published


@dataclass(frozen=True)
class Disconnect(Effect):
    completed_by = Disconnected


@dataclass(frozen=True)
class ClearSubscriptions(Effect):
    completed_by = SubscriptionsCleared


@dataclass(frozen=True)
class SaveReply(Effect):
    """Journal a raw reply durably *before* it is parsed or checked: from the moment it is on the
    disk a crash loses nothing, and the slow checks (extractor, RSA key validation) run after."""

    topic: str
    payload: bytes = field(repr=False)
    completed_by = ReplySaved


@dataclass(frozen=True)
class RequestIntent:
    """What is about to be asked of the cloud; journaled durably before the request is published, so
    a later ``--resume`` can tell "never requested" from "requested, reply lost" and name what the
    cloud probably issued. Holds no secret: the ownership token stays in the bundle."""

    operation: str  # "split", "create", "create-from-csr", "register"
    topic: str
    client_id: str
    template: str = ""
    parameters: tuple[tuple[str, str], ...] = ()
    #: csr: the CSR's public key (DER, hex), so a resumed run can check the certificate against it.
    csr_public_key: str = ""


@dataclass(frozen=True)
class SaveIntent(Effect):
    """Note: journal ``intent`` durably; the request follows."""

    intent: RequestIntent


@dataclass(frozen=True)
class MessageIgnored(Effect):
    """Note: a message was provably not a reply to this run's request and was not used."""

    topic: str
    reason: str


@dataclass(frozen=True)
class SaveBundle(Effect):
    """Note: persist the bundle (journal) before anything else happens."""

    bundle: CredentialBundle


@dataclass(frozen=True)
class StepFinished(Effect):
    """Note: a step of the chain completed (journal + progress display)."""

    state: State
    detail: str = ""


@dataclass(frozen=True)
class EraseKeyMaterial(Effect):
    """Note: the write is verified and the reconnect proved it; the journal may drop the key."""
