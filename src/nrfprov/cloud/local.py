"""``LocalAwsIot``: the whole stand-in (PKI, mosquitto, ACL/CRL policy, responder) behind one object.

State directory layout (everything the stand-in knows; reused when it exists)::

    ca.pem ca-key.pem            root CA standing in for Amazon Root CA 3 (key 0600); ca.pem also holds
                                 the RSA root once the RSA server chain was used (chains.py)
    server-cert.pem/-key.pem     EC broker certificate for localhost / 127.0.0.1
    rsa-*.pem server-rsa-*.pem   RSA root, intermediate and broker chain, made on first --server-chain rsa
    claim-cert.pem/-key.pem      shared claim (bootstrap) identity, CN nrfprov-claim
    responder-cert.pem/-key.pem  privileged responder identity, CN iot-responder
    identities/                  certificates made by issue_identity()
    templates/<name>.json        provisioning templates besides "nrfprov" (the deployed one, aws/)
    registry.json                certificates, things, token hashes, grants
    acl, crl.pem                 broker policy, rewritten from the registry, then SIGHUP
    mosquitto.conf/.log          generated config and the broker's log
    endpoint.json broker.pid     {"host": "localhost", "port"} of the running broker; its pid. "localhost"
                                 and not 127.0.0.1: Mbed TLS 2.28 (python-mbedtls, the native backend)
                                 checks DNS names only, and both backends accept the name
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from cryptography import x509

import nrfprov.aws.handler as handler
from nrfprov.cloud import acl, chains, pki, plugin, routing, templates
from nrfprov.cloud.broker import (
    HOST,
    BrokerFiles,
    MosquittoBroker,
    running_broker_pid,
    signal_running_broker,
)
from nrfprov.cloud.hosted import HOOK_TIMEOUT_S, HandlerCall, LambdaHost, allow_reprovision
from nrfprov.cloud.iot_api import DEVICE_POLICY, StandInIot
from nrfprov.cloud.registry import ACTIVE, REVOKED, TOKEN_LIFETIME_S, CertificateRecord, Registry
from nrfprov.cloud.responder import Responder
from nrfprov.cloud.service import KeyPool, ProvisioningService, RateLimiter, Reply
from nrfprov.errors import UsageError

log = logging.getLogger(__name__)

CLAIM_CN = "nrfprov-claim"
RESPONDER_CN = "iot-responder"
SERVER_NAME = "localhost"  # python-mbedtls 2.x cannot verify IP SANs: verify this name instead
#: AWS IoT Core allows one MQTT CONNECT per second per client ID [AWS General Reference, AWS IoT Core
#: endpoints and quotas]; enforced by the broker plugin (broker_plugin.c).
CONNECT_INTERVAL_S = 1.0
#: Fleet Provisioning / split requests per second and burst, per operation, before ThrottlingException.
#: Our choice (AWS's per-operation rates for the MQTT API are unpublished): high enough that a normal
#: run, a demo or ten devices at once never meet it, low enough that a station can test its limiter.
REQUEST_RATE = 10.0
REQUEST_BURST = 10


class StatePaths:
    def __init__(self, state_dir: Path) -> None:
        d = state_dir
        self.dir = d
        self.ca, self.ca_key = d / "ca.pem", d / "ca-key.pem"
        self.server_cert, self.server_key = d / "server-cert.pem", d / "server-key.pem"
        self.claim_cert, self.claim_key = d / "claim-cert.pem", d / "claim-key.pem"
        self.responder_cert, self.responder_key = d / "responder-cert.pem", d / "responder-key.pem"
        self.identities = d / "identities"
        self.acl, self.crl = d / "acl", d / "crl.pem"
        self.endpoint = d / "endpoint.json"


def _load_or_create_pki(p: StatePaths, ca_key_type: str) -> pki.CertificateAuthority:
    if p.ca.exists() and p.ca_key.exists():
        ca = pki.CertificateAuthority.load(p.ca, p.ca_key)
        fresh = False
    else:
        ca = pki.CertificateAuthority.create(ca_key_type)
        ca.save(p.ca, p.ca_key)
        fresh = True
    leaves = [
        (p.server_cert, p.server_key, SERVER_NAME, True),
        (p.claim_cert, p.claim_key, CLAIM_CN, False),
        (p.responder_cert, p.responder_key, RESPONDER_CN, False),
    ]
    for cert_path, key_path, cn, server in leaves:
        if fresh or not (cert_path.exists() and key_path.exists()):
            # Same key type as the CA: EC by default keeps start-up fast (no RSA on this path).
            key = pki.generate_key("rsa" if isinstance(ca.key, pki.rsa.RSAPrivateKey) else "ec")
            kw: dict[str, list[str]] = {"dns_names": ["localhost"], "ip_addresses": [HOST]} if server else {}
            cert = ca.issue(key.public_key(), cn, server=server, **kw)  # type: ignore[arg-type]
            pki.write_private(key_path, pki.key_to_pem(key))
            pki.write_public(cert_path, pki.cert_to_pem(cert))
    return ca


def write_policy(p: StatePaths, ca: pki.CertificateAuthority, registry: Registry) -> None:
    """Rewrite the ACL and the CRL from the registry (the broker still needs a SIGHUP)."""
    data = registry.snapshot()
    text = acl.render(
        claim_cn=CLAIM_CN, responder_cn=RESPONDER_CN,
        principals=Registry.principals(data), grants=Registry.effective_grants(data, DEVICE_POLICY),
    )
    pki.write_public(p.acl, text.encode())
    entries = [
        (serial, dt.datetime.fromtimestamp(since, dt.UTC), hold)
        for serial, since, hold in Registry.crl_entries(data)
    ]
    pki.write_public(p.crl, ca.crl(entries))


def revoke_in_state(state_dir: Path, certificate_id: str, *, now: float | None = None) -> bool:
    """Revoke in a state directory (CLI path): registry + CRL, SIGHUP a running broker.

    Returns True if a running broker was signalled.
    """
    p = StatePaths(state_dir.resolve())
    if not p.ca_key.exists():
        raise UsageError(f"{state_dir} is not a stand-in state directory (no ca-key.pem)",
                         hint="pass the --state DIR that `nrfprov cloud up` used")
    registry = Registry(p.dir)
    _mark_revoked(registry, certificate_id, time.time() if now is None else now)
    write_policy(p, pki.CertificateAuthority.load(p.ca, p.ca_key), registry)
    return signal_running_broker(p.dir)


def reprovision_in_state(state_dir: Path, thing: str, *, hours: float = 24.0, now: float | None = None) -> float:
    """``nrfprov cloud reprovision``: record an operator's permission in a state directory's registry.

    The running stand-in reads the registry on every request, so it needs no signal. Returns the expiry.
    """
    p = StatePaths(state_dir.resolve())
    if not p.ca_key.exists():
        raise UsageError(f"{state_dir} is not a stand-in state directory (no ca-key.pem)",
                         hint="pass the --state DIR that `nrfprov cloud up` used")
    return allow_reprovision(Registry(p.dir), thing, hours=hours, now=time.time() if now is None else now)


def _mark_revoked(registry: Registry, certificate_id: str, now: float) -> None:
    with registry.transaction() as data:
        entry = data["certificates"].get(certificate_id)
        if entry is None:
            raise UsageError(
                f"no certificate {certificate_id} in the registry",
                hint="list them with `nrfprov cloud list --state DIR`",
            )
        entry["status"] = REVOKED
        entry["revoked_at"] = now


class LocalAwsIot:
    """A running local AWS IoT Core: mTLS mosquitto on 127.0.0.1 plus a provisioning responder.

    AWS behaviours and quotas (each also a ``nrfprov cloud up`` flag):

    - ``server_chain``: ``"ec"`` or ``"rsa"`` (AWS's RSA-suite shape), ``server_chain_min_bytes`` pads it
      (chains.py);
    - ``connect_interval``: seconds between CONNECTs of one client ID (AWS: 1; 0 = off), enforced by the
      broker plugin, which hangs up on a faster CONNECT;
    - ``request_rate`` / ``request_burst``: provisioning requests per second per operation before the
      reply is ``ThrottlingException`` (0 = off);
    - ``token_lifetime``: seconds an ownership token is valid (AWS: one hour).

    Fleet Provisioning replies reach only the connection that made the request (routing.py).

    The split flow is answered, and RegisterThing checked (``pre_provisioning_hook``), by the product
    handler ``nrfprov.aws.handler`` (hosted.py), configured as ``nrfprov aws deploy`` configures it:
    ``allowed_device_ids`` (``--allow``), ``reserved_device_ids`` (``--reserve``; the stand-in's own
    identities are always reserved). A thing with an active certificate gets no second one until
    ``allow_reprovision(thing)`` (``nrfprov cloud reprovision THING``, as ``nrfprov aws reprovision``).
    """

    host = HOST
    server_name = SERVER_NAME

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        device_key_type: str = "rsa",
        split_order: str = "parallel",
        split_duplicates: int = 0,
        ca_key_type: str = "ec",
        key_pool: int = 1,
        server_chain: str = "ec",
        server_chain_min_bytes: int = 0,
        connect_interval: float = CONNECT_INTERVAL_S,
        request_rate: float = REQUEST_RATE,
        request_burst: int = REQUEST_BURST,
        token_lifetime: float = TOKEN_LIFETIME_S,
        allowed_device_ids: Sequence[str] = (),
        reserved_device_ids: Sequence[str] = (),
        pre_provisioning_hook: bool = True,
        hook_timeout: float = HOOK_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        mosquitto: str | None = None,
        on_broker_exit: Callable[[int], None] | None = None,
    ) -> None:
        if device_key_type not in pki.KEY_TYPES or ca_key_type not in pki.KEY_TYPES:
            raise UsageError(f"key types must be one of {', '.join(pki.KEY_TYPES)}")
        if server_chain not in chains.CHAINS:
            raise UsageError(f"server chain must be one of {', '.join(chains.CHAINS)}")
        if not 0 <= server_chain_min_bytes <= chains.MAX_CHAIN_BYTES:
            raise UsageError(f"server chain size must be 0..{chains.MAX_CHAIN_BYTES} bytes")
        if not 0 <= connect_interval <= 3600:
            raise UsageError("the CONNECT interval must be 0 (off) .. 3600 seconds")
        if request_rate < 0 or request_burst < 1:
            raise UsageError("the request rate must be >= 0 (0 = off) and the burst >= 1")
        if token_lifetime <= 0:
            raise UsageError("the ownership token lifetime must be > 0 seconds")
        if not 0 < hook_timeout <= HOOK_TIMEOUT_S:
            raise UsageError(f"the hook timeout must be > 0 and at most AWS's {HOOK_TIMEOUT_S:g} s")
        if split_order not in ("parallel", "key-first", "cert-first") or split_duplicates < 0:
            raise UsageError("split order must be parallel, key-first or cert-first; duplicates >= 0")
        self.state_dir = Path(state_dir).resolve()
        self.paths = StatePaths(self.state_dir)
        self._requested_port = port
        self.device_key_type = device_key_type
        self.split_order = split_order
        self.split_duplicates = split_duplicates
        self._ca_key_type = ca_key_type
        self._key_pool_size = key_pool
        self.server_chain_kind = server_chain
        self._server_chain_min_bytes = server_chain_min_bytes
        self.connect_interval = connect_interval
        self.request_rate = request_rate
        self.request_burst = request_burst
        self.token_lifetime = token_lifetime
        self.handler_config = handler.Config(
            device_policy=DEVICE_POLICY, allowed=tuple(allowed_device_ids),
            # Names of the stand-in's own identities are reserved like the operator's --reserve list.
            reserved=(CLAIM_CN, RESPONDER_CN, SERVER_NAME, *reserved_device_ids),
        )
        self.pre_provisioning_hook = pre_provisioning_hook
        self.hook_timeout = hook_timeout
        self._host: LambdaHost | None = None
        self.server_chain: chains.ServerChain | None = None
        self._clock = clock
        self._mosquitto = mosquitto
        self._on_broker_exit_cb = on_broker_exit
        self._broker: MosquittoBroker | None = None
        self._responder: Responder | None = None
        self._keys: KeyPool | None = None
        self._service: ProvisioningService | None = None
        self.registry = Registry(self.state_dir)
        self.ca: pki.CertificateAuthority | None = None
        self.broker_exit_code: int | None = None
        self._policy_lock = threading.Lock()

    # --- paths -----------------------------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        return self.paths.ca

    @property
    def claim_cert_path(self) -> Path:
        return self.paths.claim_cert

    @property
    def claim_key_path(self) -> Path:
        return self.paths.claim_key

    @property
    def endpoint_path(self) -> Path:
        return self.paths.endpoint

    @property
    def port(self) -> int:
        if self._broker is None or not self._broker.port:
            raise UsageError("the stand-in is not running", hint="use it as a context manager or call start()")
        return self._broker.port

    @property
    def broker_pid(self) -> int | None:
        return self._broker.pid if self._broker else None

    @property
    def running(self) -> bool:
        return self._broker is not None and self._broker.alive

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalAwsIot:
        if self.running:
            raise UsageError("this stand-in is already running", hint="stop() it first, or use a new object")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # holds CA and claim keys
        other = running_broker_pid(self.state_dir)
        if other is not None:
            raise UsageError(
                f"a stand-in already runs on {self.state_dir} (mosquitto pid {other})",
                hint="stop it, or pass another state directory",
            )
        self.paths.identities.mkdir(exist_ok=True)
        self.ca = _load_or_create_pki(self.paths, self._ca_key_type)
        self.server_chain = chains.ensure(self.state_dir, self.ca, self.server_chain_kind,
                                          min_bytes=self._server_chain_min_bytes)
        plugin_path = plugin.ensure_plugin()
        templates.ensure_dir(self.state_dir)
        write_policy(self.paths, self.ca, self.registry)
        self._keys = KeyPool(self.device_key_type, self._key_pool_size)
        limiter = RateLimiter(self.request_rate, self.request_burst, self._clock) if self.request_rate else None
        # The AWS clients the product handler gets: the registry, CA, key pool and broker of this stand-in.
        iot = StandInIot(registry=self.registry, ca=self.ca, take_key=self._keys.take,
                         policy_changed=self._apply_policy, clock=self._clock,
                         allow_issue=lambda: self._service is None or self._service.allow("split"))
        self._host = LambdaHost(iot, self.handler_config, self._clock, split_order=self.split_order,
                                split_duplicates=self.split_duplicates, hook_timeout=self.hook_timeout)
        claim = x509.load_pem_x509_certificate(self.paths.claim_cert.read_bytes())
        self._service = ProvisioningService(
            state_dir=self.state_dir, ca=self.ca, registry=self.registry, keys=self._keys, host=self._host,
            policy_changed=self._apply_policy, clock=self._clock, claim_certificate_id=pki.certificate_id(claim),
            hook=self.pre_provisioning_hook, limiter=limiter, token_lifetime=self.token_lifetime,
        )
        options = routing.plugin_options(round(self.connect_interval * 1000))
        files = BrokerFiles(self.paths.ca, self.server_chain.cert_path, self.server_chain.key_path, self.paths.crl,
                            self.paths.acl, plugin_path, tuple(options.items()))
        self._broker = MosquittoBroker(
            self.state_dir, files, port=self._requested_port, binary=self._mosquitto,
            on_exit=self._on_broker_exit,
        )
        try:
            self._broker.start()
            self._responder = Responder(
                host=HOST, port=self._broker.port, ca=self.paths.ca, cert=self.paths.responder_cert,
                key=self.paths.responder_key,
                # A random suffix: a claim client that takes the responder's client ID must not be
                # able to knock it off (a duplicate client ID disconnects the older session).
                client_id=f"{RESPONDER_CN}-{secrets.token_hex(4)}", handle=self._handle,
            )
            self._responder.start()
        except BaseException:
            self.stop()
            raise
        self.paths.endpoint.write_text(json.dumps({"host": SERVER_NAME, "port": self._broker.port}) + "\n")
        log.info("local AWS IoT on %s:%d (state %s)", HOST, self._broker.port, self.state_dir)
        return self

    def _on_broker_exit(self, code: int) -> None:
        self.broker_exit_code = code
        log.error("mosquitto exited unexpectedly with code %d; see %s", code, self.state_dir / "mosquitto.log")
        if self._on_broker_exit_cb is not None:
            self._on_broker_exit_cb(code)

    def stop(self) -> None:
        if self._responder is not None:
            self._responder.stop()
            self._responder = None
        if self._broker is not None:
            self._broker.stop()
        if self._keys is not None:
            self._keys.close()
            self._keys = None
        try:
            self.paths.endpoint.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> LocalAwsIot:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- policy ----------------------------------------------------------------------------------

    def _handle(self, topic: str, payload: bytes, client_id: str | None) -> Reply | None:
        assert self._service is not None
        return self._service.handle(topic, payload, client_id)

    def _apply_policy(self) -> None:
        assert self.ca is not None
        # The responder's worker and the caller's thread (grant, revoke) may both get here.
        with self._policy_lock:
            self._apply_policy_locked()

    def _apply_policy_locked(self) -> None:
        assert self.ca is not None
        write_policy(self.paths, self.ca, self.registry)
        if self._broker is not None and self._broker.alive:
            self._broker.reload(wait=True, nudge=self._responder.nudge if self._responder else None)
            if self._responder is not None:
                self._responder.barrier()  # the reload has finished, not just started

    def grant_device(self, thing_name: str, cn: str) -> None:
        """The "AttachPolicy" step: ``cn`` may now use ``$aws/things/<thing_name>/#``. Reloads the broker."""
        if not (acl.valid_name(thing_name) and acl.valid_name(cn)):
            raise UsageError(f"invalid thing name or CN: {thing_name!r}, {cn!r}",
                             hint="names are 1-128 chars of A-Z a-z 0-9 : _ -")
        with self.registry.transaction() as data:
            Registry.add_grant(data, cn, thing_name)
        self._apply_policy()

    def revoke(self, certificate_id: str) -> None:
        """Revoke: registry status REVOKED, certificate in the CRL, broker reloaded (new TLS handshakes
        with it fail; connections already open stay, as with mosquitto's CRL handling)."""
        _mark_revoked(self.registry, certificate_id, self._clock())
        self._apply_policy()

    # --- queries and helpers ---------------------------------------------------------------------

    def certificates(self) -> list[CertificateRecord]:
        return self.registry.certificates()

    def request_counts(self) -> dict[str, int]:
        """Requests received per operation, throttled ones included."""
        counts = {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}
        if self._service is not None:
            counts.update(self._service.request_counts())
        return counts

    def throttled_counts(self) -> dict[str, int]:
        """Requests answered with ThrottlingException, per operation."""
        counts = {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}
        if self._service is not None:
            counts.update(self._service.throttled_counts())
        return counts

    def handler_calls(self) -> list[HandlerCall]:
        """Every run of the product handler (``nrfprov.aws.handler``): split requests and hook calls, with
        the event it got and what it returned (certificate ids, error codes; never key material)."""
        return self._host.calls() if self._host is not None else []

    def allow_reprovision(self, thing: str, *, hours: float = 24.0) -> float:
        """An operator's permission for one more certificate for ``thing`` (``nrfprov aws reprovision``);
        the next request uses it up and the old certificates are deactivated. Returns the expiry."""
        return allow_reprovision(self.registry, thing, hours=hours, now=self._clock())

    def issue_identity(self, cn: str, key_type: str = "ec") -> tuple[Path, Path]:
        """A CA-signed client identity for tests: ACTIVE, no rights until ``grant_device``."""
        if self.ca is None:
            raise UsageError("start the stand-in before issuing identities")
        if not acl.valid_name(cn) or cn in (CLAIM_CN, RESPONDER_CN, SERVER_NAME):
            raise UsageError(f"invalid or reserved CN {cn!r}", hint="use 1-128 chars of A-Z a-z 0-9 : _ -")
        key = pki.generate_key(key_type)
        cert = self.ca.issue(key.public_key(), cn)
        cert_path = self.paths.identities / f"{cn}-cert.pem"
        key_path = self.paths.identities / f"{cn}-key.pem"
        pki.write_private(key_path, pki.key_to_pem(key))
        pki.write_public(cert_path, pki.cert_to_pem(cert))
        with self.registry.transaction() as data:
            self.registry.add_certificate(
                data, certificate_id=pki.certificate_id(cert), common_name=cn, serial=cert.serial_number,
                status=ACTIVE, operation="identity", created_at=self._clock(),
            )
        self._apply_policy()
        return cert_path, key_path

    def write_certs_folder(self, directory: Path) -> Path:
        """Nordic's aws_iot_provisioning sample's ``certs/`` layout for native TLS, holding the claim credentials."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.paths.ca, directory / "ca-cert.pem")
        shutil.copyfile(self.paths.claim_cert, directory / "client-cert.pem")
        pki.write_private(directory / "private-key.pem", self.paths.claim_key.read_bytes())
        return directory
