"""Modem (non-socket) AT commands of the simulated nRF91: CFUN, CEREG, identity, %CMNG, %KEYGEN.

Behaviour follows the Nordic AT reference (%CMNG, %KEYGEN) and sdk-nrf ``lte_lc.h`` / ``modem_key_mgmt.c``,
plus our own choices where they are silent (mirrored by the client). Runs on the worker thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nrfprov.sim import keygen
from nrfprov.sim.framing import Command
from nrfprov.sim.netsock import SocketFailure, lookup_ipv4
from nrfprov.sim.replies import AtFail, as_int, ok, param
from nrfprov.sim.store import MAX_SEC_TAG, WRITABLE_TYPES, ContentError, validate

if TYPE_CHECKING:
    from nrfprov.sim.modem import SimulatedModem

MFW_VERSION = "mfw_nrf9160_1.3.7"  # 1.3.7 is a firmware with the %KEYGEN NULL-parameter quirk
MODEL = "nRF9160-SICA"
SM_VERSION = "1.0.0"  # Serial Modem add-on version string reported by #XSMVER
SLM_NCS_VERSION = "2.9.0"  # NCS version reported by legacy #XSLMVER
TAC, CELL_ID = "0A2F", "0012BEEF"  # made-up serving cell
ACT_LTE_M = 7
# Firmware build UUID (%XMODEMUUID, and the firmware UUID of %ATTESTTOKEN): derived from the version
# string, so stable.
FIRMWARE_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, MFW_VERSION))
# %ATTESTTOKEN device type. Nordic's published table (keygen.DEVICE_TYPES) has no SICA entry; we report
# 1 (nRF9160 SIAA), the nearest nRF9160 (unconfirmed for SICA parts).
DEVICE_TYPE = keygen.DEVICE_TYPES.get(MODEL, 1)

# CFUN values the modem accepts [sdk-nrf include/modem/lte_lc.h] and the radio state each leaves behind.
_CFUN_LTE_ON = {1, 21}
_CFUN_LTE_OFF = {0, 4, 20, 44}
_CFUN_OTHER = {2, 30, 31, 40, 41}
# %CMNG write/delete and %KEYGEN are refused in these modes with +CME ERROR: 518
# [Nordic AT reference, %CMNG].
_ACTIVE = {1, 2, 21}

Handler = Callable[[Command], bytes | None]


class ModemCommands:
    def __init__(self, modem: SimulatedModem) -> None:
        self.m = modem
        self._table: dict[str, Handler] = {
            "": lambda c: ok(),
            "+CMEE": self.cmee,
            "+CFUN": self.cfun,
            "+CEREG": self.cereg,
            "+CGSN": self.cgsn,
            "+CGMR": lambda c: self._bare(c, MFW_VERSION),
            "+CGMM": lambda c: self._bare(c, MODEL),
            "+CGMI": lambda c: self._bare(c, "Nordic Semiconductor ASA"),
            "%XMODEMUUID": self.xmodemuuid,
            "%XSYSTEMMODE": self.xsystemmode,
            "%CMNG": self.cmng,
            "%KEYGEN": self.keygen,
            "%ATTESTTOKEN": self.attesttoken,
            "#XGETADDRINFO": self.xgetaddrinfo,
            "#XRESET": self.xreset,
        }
        if modem.dialect == "sm":
            self._table["#XSMVER"] = lambda c: self._exec_only(c, f'#XSMVER: "{SM_VERSION}","{MFW_VERSION}"')
        else:
            self._table["#XSLMVER"] = lambda c: self._exec_only(
                c, f'#XSLMVER: "{SLM_NCS_VERSION}","{MFW_VERSION}"'
            )
        self._sysmode = "1,0,0,0"

    def handler(self, name: str) -> Handler | None:
        return self._table.get(name)

    # --- simple ones ---------------------------------------------------------------------------

    def _exec_only(self, c: Command, line: str) -> bytes:
        if c.form != "exec":
            raise AtFail()
        return ok(line)

    def _bare(self, c: Command, value: str) -> bytes:
        return self._exec_only(c, value)

    def cmee(self, c: Command) -> bytes:
        if c.form == "read":
            return ok(f"+CMEE: {self.m.cmee}")
        if c.form == "test":
            return ok("+CMEE: (0,1)")
        if c.form != "set":
            raise AtFail()
        self.m.cmee = as_int(param(c.params, 0), 0, 1)
        return ok()

    def xmodemuuid(self, c: Command) -> bytes:
        return self._exec_only(c, f"%XMODEMUUID: {FIRMWARE_UUID}")

    def xsystemmode(self, c: Command) -> bytes:
        if c.form == "read":
            return ok(f"%XSYSTEMMODE: {self._sysmode}")
        if c.form != "set" or len(c.params) != 4:
            raise AtFail()
        values = [as_int(p, 0, 4) for p in c.params]
        if self.m.cfun in _ACTIVE:
            raise AtFail(518, "system mode can only change offline")
        self._sysmode = ",".join(map(str, values))
        return ok()

    def attesttoken(self, c: Command) -> bytes:
        ident = self.m.identity
        tok = keygen.attest_token(
            device_uuid=ident.uuid,
            device_type=DEVICE_TYPE,
            firmware_uuid=FIRMWARE_UUID,
            attest_key=ident.attest_key,
            key_type=self.m.signing_key_type,
        )
        return self._exec_only(c, f'%ATTESTTOKEN: "{tok}"')

    def xreset(self, c: Command) -> bytes:
        """``AT#XRESET``: the application restarts: ``OK``, then the boot banner ``Ready``; sockets, their
        poll and receive settings, CFUN, +CEREG and +CMEE reporting start from scratch
        [ncs-serial-modem at_generic.rst; sdk-nrf serial_lte_modem Generic_AT_commands.rst]."""
        if c.form != "exec":
            raise AtFail()
        m = self.m
        m._attach_gen += 1  # a pending attach belongs to the modem before the restart
        m.sockets.close_all()
        m.sockets.reset()
        m.cfun, m.reg_stat, m.cereg_n, m.cmee = 0, 0, 0, 0
        m.call_soon(lambda: m.respond(b"\r\nReady\r\n"))  # after the OK
        return ok()

    def xgetaddrinfo(self, c: Command) -> bytes:
        """``AT#XGETADDRINFO="<host>"[,<family>]`` → ``#XGETADDRINFO: "<ip>"``: a DNS lookup over the radio
        [ncs-serial-modem at_socket.rst; sdk-nrf SOCKET_AT_commands.rst]. IPv4 only, as the sockets."""
        if c.form != "set":
            raise AtFail()
        host = param(c.params, 0)
        family = as_int(param(c.params, 1) or "0", 0, 2)
        if not host or family == 2:
            raise AtFail(None, "only IPv4 lookups are simulated")
        m = self.m
        if m.reg_stat not in (1, 5):
            raise AtFail(None, "not registered to the LTE network")
        try:
            ip = lookup_ipv4(host, resolve=m.resolve, allow_remote=m.allow_remote, link=m.link, stats=m.stats,
                             stop=m._stop)
        except SocketFailure as exc:
            raise AtFail(None, exc.reason) from exc
        return ok(f'#XGETADDRINFO: "{ip}"')

    def cgsn(self, c: Command) -> bytes:
        imei = self.m.identity.imei
        if c.form == "exec":
            return ok(imei)
        if c.form == "test":
            return ok("+CGSN: (0-3)")
        if c.form != "set":
            raise AtFail()
        kind = as_int(param(c.params, 0), 0, 3)
        if kind == 0:
            return ok(imei)
        if kind == 1:
            return ok(f'+CGSN: "{imei}"')
        if kind == 2:
            return ok(f'+CGSN: "{imei[:14]}01"')  # IMEISV: 14 digits + 2-digit software version
        raise AtFail()

    # --- CFUN / CEREG --------------------------------------------------------------------------

    def cfun(self, c: Command) -> bytes:
        m = self.m
        if c.form == "read":
            return ok(f"+CFUN: {m.cfun}")
        if c.form == "test":
            return ok("+CFUN: (0,1,2,4,20,21,30,31,40,41,44)")
        if c.form != "set":
            raise AtFail()
        mode = as_int(param(c.params, 0), 0, 44)
        prev = m.cfun
        if mode in _CFUN_LTE_ON:
            if self._sysmode.startswith("0,0,"):
                raise AtFail(None, "no LTE system mode enabled (%XSYSTEMMODE)")  # [lte_lc.h]
            m.cfun = 1
            if prev != 1:
                self._lte(on=True)
        elif mode in _CFUN_LTE_OFF:
            m.cfun = 0 if mode == 0 else 4
            self._lte(on=False)
        elif mode in _CFUN_OTHER:
            if mode == 2:
                m.cfun = 2
                self._lte(on=False)
        else:
            raise AtFail(None, f"CFUN={mode} not supported")
        return ok()

    def _lte(self, *, on: bool) -> None:
        """Registration follows CFUN: searching, then home after the attach delay; 0 when off.

        The URCs are queued behind the command so they reach the host after its OK, as on hardware.
        """
        m = self.m
        m._attach_gen += 1
        gen = m._attach_gen
        if not on:
            m.sockets.network_down()  # the PDN is gone at once, even if CFUN=1 follows right away

        def attach() -> None:
            if m._attach_gen == gen:
                self._set_stat(1)

        def after_ok() -> None:
            if m._attach_gen != gen:
                return
            if not on:
                self._set_stat(0)
                return
            self._set_stat(2)
            m.schedule(max(0.0, m.attach_delay), attach)

        m.call_soon(after_ok)

    def _set_stat(self, stat: int) -> None:
        m = self.m
        if m.reg_stat == stat:
            return
        m.reg_stat = stat
        if m.cereg_n >= 1:
            m.urc(self._cereg_urc())

    def _cereg_urc(self) -> str:
        m = self.m
        if m.cereg_n >= 2 and m.reg_stat in (1, 5):
            return f'+CEREG: {m.reg_stat},"{TAC}","{CELL_ID}",{ACT_LTE_M}'
        return f"+CEREG: {m.reg_stat}"

    def cereg(self, c: Command) -> bytes:
        m = self.m
        if c.form == "read":
            line = f"+CEREG: {m.cereg_n},{m.reg_stat}"
            if m.cereg_n >= 2 and m.reg_stat in (1, 5):
                line += f',"{TAC}","{CELL_ID}",{ACT_LTE_M}'
            return ok(line)
        if c.form == "test":
            return ok("+CEREG: (0-5)")
        if c.form != "set":
            raise AtFail()
        m.cereg_n = as_int(param(c.params, 0), 0, 5)
        return ok()

    # --- %CMNG ---------------------------------------------------------------------------------

    def cmng(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        p = c.params
        op = as_int(param(p, 0), 0, 3)
        store = self.m.store
        tag = as_int(param(p, 1), 0, MAX_SEC_TAG) if param(p, 1) is not None else None
        ctype = as_int(param(p, 2), 0, 11) if param(p, 2) is not None else None
        if op == 1:
            lines = [f'%CMNG: {t},{ty},"{sha}"' for t, ty, sha in store.entries(tag, ctype)]
            return ok(*lines)
        if tag is None or ctype is None:
            raise AtFail(None, "sec_tag and type are required")
        if op == 2:
            if ctype == 2:
                raise AtFail(514, "private keys cannot be read back")
            content = store.get(tag, ctype)
            if content is None:
                raise AtFail(513, "no such credential")
            sha = store.entries(tag, ctype)[0][2]
            return ok(f'%CMNG: {tag},{ctype},"{sha}","{content}"')
        if self.m.cfun in _ACTIVE:
            raise AtFail(518, "credential changes need CFUN=4 or 0")
        if op == 3:
            if not store.delete(tag, ctype):
                raise AtFail(513, "no such credential")
            return ok()
        # op == 0: write
        if ctype not in WRITABLE_TYPES:
            raise AtFail(None, f"type {ctype} cannot be written")
        content = param(p, 3)
        passwd = param(p, 4)
        try:
            validate(ctype, content or "", passwd)
        except ContentError as exc:
            raise AtFail(exc.cme, str(exc)) from exc
        assert content is not None
        store.put(tag, ctype, content, passwd)
        return ok()

    # --- %KEYGEN -------------------------------------------------------------------------------

    def keygen(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        p = c.params
        tag = as_int(param(p, 0), 0, MAX_SEC_TAG)
        key_type = as_int(param(p, 1), 0, 16)
        fmt = as_int(param(p, 2), 0, 1) if param(p, 2) is not None else 0
        attrs = param(p, 3) or ""
        if key_type != 2:
            raise AtFail(None, "only key type 2 (client private key) is simulated")
        if self.m.cfun in _ACTIVE:
            raise AtFail(518, "%KEYGEN needs CFUN=4 or 0")
        ident = self.m.identity
        try:
            name = keygen.parse_attributes(attrs, ident.uuid)
        except keygen.BadAttributes as exc:
            raise AtFail(None, str(exc)) from exc
        key = ec.generate_private_key(ec.SECP256R1())
        if fmt == 0:
            body = keygen.make_csr(key, name, null_quirk=self.m.csr_null_quirk)
        else:
            body = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.m.store.put(tag, 2, pem)
        reply = keygen.keygen_reply(
            body,
            device_uuid=ident.uuid,
            sec_tag=tag,
            attest_key=ident.attest_key,
            csr=fmt == 0,
            key_type=self.m.signing_key_type,
        )
        return ok(f'%KEYGEN: "{reply}"')
