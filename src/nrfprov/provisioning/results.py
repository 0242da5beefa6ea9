"""What a provisioning run needs from a modem, and what it reports: ``ProvisioningModem``,
``StepReport`` and ``RunResult`` (the driver fills them; the CLI, the station and the benchmarks read
them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nrfprov.names import Backend, Flow, PayloadFormat
from nrfprov.provisioning import machine as m
from nrfprov.transport.backends import ModemLike

if TYPE_CHECKING:
    from nrfprov.modem.credentials import CredentialInfo


class ProvisioningModem(ModemLike, Protocol):
    """The part of ``nrfprov.modem.Modem`` a run uses; sockets and modem TLS come from ``ModemLike``."""

    @property
    def dialect(self) -> str: ...

    @property
    def uart_bytes_sent(self) -> int: ...

    @property
    def uart_bytes_received(self) -> int: ...

    def imei(self) -> str: ...

    def at(self, text: str, timeout: float | None = ...) -> list[str]: ...

    def credentials(self, sec_tag: int | None = ...) -> list[CredentialInfo]: ...

    def cfun(self) -> int: ...

    def set_cfun(self, mode: int) -> None: ...

    def wait_registered(self, timeout: float) -> int: ...

    def delete_credential(self, sec_tag: int, type: int, missing_ok: bool = ...) -> bool: ...

    def write_credential(self, sec_tag: int, type: int, pem: str) -> str: ...

    def keygen_csr(self, sec_tag: int, attributes: str | None = ...) -> bytes: ...


@dataclass(frozen=True)
class StepReport:
    state: m.State
    detail: str
    seconds: float  # since the run started


@dataclass
class RunResult:
    ok: bool
    flow: Flow
    payload_format: PayloadFormat
    backend: Backend
    dialect: str
    client_id: str
    thing_name: str = ""
    certificate_id: str = ""
    seconds: float = 0.0
    uart_bytes: int = 0
    socket_bytes: int = 0
    resumed: bool = False
    steps: list[StepReport] = field(default_factory=list)
    error: str = ""
    error_type: str = ""
    exit_code: int = 0
    #: What the user must hear besides the outcome: orphaned certificates, a replaced one, a finished run.
    notices: list[str] = field(default_factory=list)
    #: Certificates issued (or probably issued) that nothing holds a key for (journal ``orphans``).
    orphans: list[dict[str, Any]] = field(default_factory=list)
    #: The certificate ``--force`` replaced in the sec tag (id, SHA-256 of its PEM, thing), to revoke.
    replaced: dict[str, str] | None = None
    #: Milliseconds from a key-carrying reply's arrival on the host (paho decoded it) to its durable
    #: journal write: the window in which a kill loses an issued key. None when no key arrived (csr).
    key_window_ms: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "flow": self.flow, "format": self.payload_format, "backend": self.backend,
            "dialect": self.dialect, "client_id": self.client_id, "thing_name": self.thing_name,
            "certificate_id": self.certificate_id, "seconds": round(self.seconds, 3),
            "uart_bytes": self.uart_bytes, "socket_bytes": self.socket_bytes, "resumed": self.resumed,
            "steps": [{"step": s.state.value, "detail": s.detail, "seconds": round(s.seconds, 3)}
                      for s in self.steps],
            "error": self.error, "error_type": self.error_type, "exit_code": self.exit_code,
            "notices": list(self.notices), "orphans": list(self.orphans), "replaced": self.replaced,
            "key_window_ms": None if self.key_window_ms is None else round(self.key_window_ms, 3),
        }
