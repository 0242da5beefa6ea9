"""Socket AT commands in both dialects [sdk-nrf SOCKET_AT_commands.rst; ncs-serial-modem at_socket.rst].

Where those docs are silent the choices are ours, and the client mirrors them.

Serial Modem (``sm``, NCS ≥ 3.1): every command names its handle; binary send is length-delimited
(``AT#XSEND=<h>,2,<flags>,<len>``, no terminator scan); readiness via ``#XAPOLL`` URCs, which carry only
the requested POLLIN/POLLOUT bits (``revents & xapoll_events`` in ncs-serial-modem ``sm_at_socket.c``;
ERR and HUP are never reported, so a failed or closed socket shows as POLLIN: a read does not block on
it, our reading of poll(2) for the modem, unconfirmed); ``#XRECV`` at end of stream answers a bare
``OK`` (``do_recv``: recv() returned 0, no ``#XRECV:`` line); ``#XRECVCFG`` auto-receive pushes
``#XRECV: <h>,0,<n>`` CR LF data CR LF after the ``#XAPOLL`` and a lone CR LF at end of stream
(``auto_reception``), never in data mode (events wait until the modem is back in AT-command mode).
Legacy SLM (``slm``): one selected socket; binary send is terminator-delimited data mode with the
terminator matched anywhere (the ``+++`` hazard, reproduced on purpose); readiness via ``#XPOLL``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nrfprov.sim.framing import Command
from nrfprov.sim.netsock import POLLERR, POLLHUP, POLLIN, POLLOUT, SimSocket, SocketFailure
from nrfprov.sim.replies import AtFail, as_int, ok, param
from nrfprov.sim.sendsink import SendSink
from nrfprov.sim.tlsctx import tls_context

if TYPE_CHECKING:
    from nrfprov.sim.modem import SimulatedModem

log = logging.getLogger(__name__)

MAX_SOCKETS = 8  # nRF91 modem socket limit [sdk-nrf slm_at_socket.c]
MAX_RECV = 2048  # bytes per #XRECV: NRF_SOCKET_TLS_MAX_MESSAGE_SIZE [nrf_socket.h]
MAX_SEND_LEN = 4096  # SM data-mode buffer, CONFIG_SM_DATAMODE_BUF_SIZE default [sm_data_mode.rst]
MAX_INLINE_SEND = 1024  # SLM AT#XSEND="<text>" limit [SOCKET_AT_commands.rst]
RECV_DONTWAIT = 64
RECV_PEEK = 2
TLS_PROTO = 258  # IPPROTO_TLS_1_2
Handler = Callable[[Command], bytes | None]


class SocketCommands:
    def __init__(self, modem: SimulatedModem) -> None:
        self.m = modem
        self.sm = modem.dialect == "sm"
        self.socks: dict[int, SimSocket] = {}
        self.selected: int | None = None  # SLM
        self._lock = threading.Lock()  # guards socks + poll state against pump threads
        self._changed = threading.Condition(self._lock)
        self._apoll: dict[int, int] = {}  # handle → events mask (SM #XAPOLL)
        self._in_armed: set[int] = set()
        self._out_armed: set[int] = set()
        self._recvcfg: dict[int, int] = {}  # handle → #XRECVCFG auto-reception flags (SM)
        self._recvcfg_default = 0  # AT#XRECVCFG=,<flags>: for every socket, open or opened later
        self._apoll_default = 0  # AT#XAPOLL=,1,<events>: the same for #XAPOLL [sm_at_socket.c poll_ctx]
        self._eof_pushed: set[int] = set()
        common: dict[str, Handler] = {
            "#XSOCKET": self.xsocket,
            "#XSSOCKET": self.xssocket,
            "#XSSOCKETOPT": self.xssocketopt,
            "#XSOCKETOPT": self.xsocketopt,
            "#XCONNECT": self.xconnect,
            "#XSEND": self.xsend,
            "#XRECV": self.xrecv,
        }
        if self.sm:
            common.update({"#XCLOSE": self.xclose, "#XAPOLL": self.xapoll, "#XRECVCFG": self.xrecvcfg})
        else:
            common.update({"#XSOCKETSELECT": self.xsocketselect, "#XPOLL": self.xpoll})
        self._table = common

    def handler(self, name: str) -> Handler | None:
        return self._table.get(name)

    # --- helpers -------------------------------------------------------------------------------

    def _sock(self, params: tuple[str | None, ...], idx: int = 0) -> SimSocket:
        """The socket a command names (SM: handle param) or the selected one (SLM)."""
        if self.sm:
            h = as_int(param(params, idx), 0, MAX_SOCKETS - 1)
        else:
            if self.selected is None:
                raise AtFail(None, "no socket selected")
            h = self.selected
        s = self.socks.get(h)
        if s is None:
            raise AtFail(None, f"no socket {h}")
        return s

    def _open(self, *, tls: bool, sec_tag: int | None, peer_verify: int) -> SimSocket:
        with self._lock:
            free = [h for h in range(MAX_SOCKETS) if h not in self.socks]
            if not free:
                raise AtFail(None, "all 8 sockets in use")
            h = free[0]
            s = SimSocket(
                h,
                tls=tls,
                sec_tag=sec_tag,
                peer_verify=peer_verify,
                stats=self.m.stats,
                on_event=self.on_event,
                link=self.m.link,
            )
            self.socks[h] = s
            if self._recvcfg_default:
                self._recvcfg[h] = self._recvcfg_default
            if self._apoll_default:  # a new socket takes the context's events, armed [sm_at_socket.c]
                self._apoll[h] = self._apoll_default
                self._in_armed.add(h)
                self._out_armed.add(h)
        self.selected = h
        return s

    def _close(self, h: int) -> None:
        with self._lock:
            s = self.socks.pop(h, None)
            self._apoll.pop(h, None)
            self._in_armed.discard(h)
            self._out_armed.discard(h)
            self._recvcfg.pop(h, None)
            self._eof_pushed.discard(h)
        if s is not None:
            s.close()
        if self.selected == h:
            self.selected = min(self.socks) if self.socks else None

    def network_down(self) -> None:
        """LTE off: every connected socket fails with ENETDOWN; armed polls report POLLERR."""
        for s in list(self.socks.values()):
            s.network_down()
            self._poll_after_reply(s)

    def close_all(self) -> None:
        for h in list(self.socks):
            self._close(h)

    def reset(self) -> None:
        """Forget the settings for sockets opened later (a restart of the application)."""
        with self._lock:
            self._recvcfg_default = 0
            self._apoll_default = 0

    # --- open / options ------------------------------------------------------------------------

    def xsocket(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        first = as_int(param(c.params, 0), 0, 3)
        if not self.sm and first == 0:  # SLM: AT#XSOCKET=0 closes the selected socket
            if self.selected is None:
                raise AtFail(None, "no socket selected")
            self._close(self.selected)
            return ok('#XSOCKET: 0,"closed"')
        if first != 1:
            raise AtFail(None, "only IPv4 (1) sockets are simulated")
        if as_int(param(c.params, 1), 1, 3) != 1 or as_int(param(c.params, 2), 0, 1) != 0:
            raise AtFail(None, "only TCP client sockets are simulated")
        s = self._open(tls=False, sec_tag=None, peer_verify=0)
        return ok(f"#XSOCKET: {s.handle},1,6")

    def xssocket(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        if as_int(param(c.params, 0), 1, 2) != 1:
            raise AtFail(None, "only IPv4 (1) sockets are simulated")
        if as_int(param(c.params, 1), 1, 2) != 1 or as_int(param(c.params, 2), 0, 1) != 0:
            raise AtFail(None, "only TLS stream client sockets are simulated")
        tag = as_int(param(c.params, 3), 0, 2147483647)
        verify = as_int(param(c.params, 4), 0, 2) if param(c.params, 4) is not None else 2
        s = self._open(tls=True, sec_tag=tag, peer_verify=verify)
        return ok(f"#XSSOCKET: {s.handle},1,{TLS_PROTO}")

    def xssocketopt(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        s = self._sock(c.params)
        p = c.params[1:] if self.sm else c.params
        op = as_int(param(p, 0), 0, 1)
        name = as_int(param(p, 1), 0, 20)
        if not s.tls or op != 1 or s.connected:
            raise AtFail(None, "TLS options are set on a TLS socket before connect")
        if name == 2:  # TLS_HOSTNAME
            host = param(p, 2)
            if not host:
                raise AtFail()
            s.hostname = host
        elif name == 5:  # TLS_PEER_VERIFY
            s.peer_verify = as_int(param(p, 2), 0, 2)
        elif name not in (12, 13):  # session cache / cache purge: accepted, no effect here
            raise AtFail(None, f"TLS option {name} not simulated")
        return ok()

    def xsocketopt(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        s = self._sock(c.params)
        p = c.params[1:] if self.sm else c.params
        op = as_int(param(p, 0), 0, 1)
        name = as_int(param(p, 1), 0, 100)
        if op == 1:
            return ok()  # timeouts, keep-alive ...: accepted; the simulator has no use for them
        if name != 4:  # SO_ERROR is the only option read back
            raise AtFail(None, f"get option {name} not simulated")
        return ok(f"#XSOCKETOPT: {s.handle},{s.error}" if self.sm else f"#XSOCKETOPT: {s.error}")

    def xsocketselect(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        h = as_int(param(c.params, 0), 0, MAX_SOCKETS - 1)
        if h not in self.socks:
            raise AtFail()
        self.selected = h
        return ok(f"#XSOCKETSELECT: {h}")

    # --- connect -------------------------------------------------------------------------------

    def xconnect(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        s = self._sock(c.params)
        p = c.params[1:] if self.sm else c.params
        host = param(p, 0)
        port = as_int(param(p, 1), 1, 65535)
        if not host:
            raise AtFail()
        if s.connected:
            raise AtFail(None, "already connected")
        if self.m.reg_stat not in (1, 5):
            raise AtFail(None, "not registered to the LTE network (send AT+CFUN=1 and wait for +CEREG: 1)")
        context = None
        if s.tls:
            assert s.sec_tag is not None
            try:
                context = tls_context(self.m.store, self.m.state_dir, s.sec_tag, s.peer_verify, s.hostname)
            except (ssl.SSLError, ValueError) as exc:
                raise AtFail(None, f"sec tag {s.sec_tag} credentials unusable: {exc}") from exc
        try:
            s.connect(
                host, port, resolve=self.m.resolve, allow_remote=self.m.allow_remote, context=context, stop=self.m._stop
            )
        except SocketFailure as exc:
            raise AtFail(None, str(exc)) from exc
        self._arm_out(s.handle)
        self._poll_after_reply(s)
        return ok(f"#XCONNECT: {s.handle},1" if self.sm else "#XCONNECT: 1")

    # --- send ----------------------------------------------------------------------------------

    def xsend(self, c: Command) -> bytes | None:
        if self.sm:
            return self._xsend_sm(c)
        s = self._sock(c.params)
        self._usable(s)
        if c.form == "exec":  # SLM data mode, terminator-delimited
            self.m.enter_datamode(SendSink(s, counted=False), ok(), count=None)
            return None
        if c.form != "set":
            raise AtFail()
        text = param(c.params, 0) or ""
        if len(text) > MAX_INLINE_SEND:
            raise AtFail()
        n = self._send_now(s, text.encode("latin-1"))
        return ok(f"#XSEND: {n}")

    def _xsend_sm(self, c: Command) -> bytes | None:
        if c.form != "set":
            raise AtFail()
        s = self._sock(c.params)
        mode = as_int(param(c.params, 1), 0, 2)
        as_int(param(c.params, 2) or "0", 0, 0xFFFF)  # flags: accepted, no effect here
        self._usable(s)
        if mode == 2:
            length = param(c.params, 3)
            if length is None:
                self.m.enter_datamode(SendSink(s, counted=False), ok(), count=None)
            else:
                n = as_int(length, 1, MAX_SEND_LEN)
                self.m.enter_datamode(SendSink(s, counted=True), ok(), count=n)
            self._arm_out(s.handle)  # #XSEND re-arms POLLOUT
            self._poll_after_reply(s)
            return None
        text = param(c.params, 3) or ""
        try:
            data = text.encode("latin-1") if mode == 0 else bytes.fromhex(text)
        except ValueError as exc:
            raise AtFail(None, "bad hex data") from exc
        n = self._send_now(s, data)
        self._arm_out(s.handle)
        self._poll_after_reply(s)
        return ok(f"#XSEND: {s.handle},0,{n}")

    def _usable(self, s: SimSocket) -> None:
        if s.error or not s.connected:
            raise AtFail(None, f"socket {s.handle} not usable (error {s.error})")

    def _send_now(self, s: SimSocket, data: bytes) -> int:
        try:
            return s.send(data)
        except SocketFailure as exc:
            self._poll_after_reply(s)
            raise AtFail(None, str(exc)) from exc

    # --- receive -------------------------------------------------------------------------------

    def xrecv(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        p = c.params
        if self.sm:
            s = self._sock(p)
            mode = as_int(param(p, 1), 0, 1)
            flags = as_int(param(p, 2) or "0", 0, 0xFFFF)
            timeout = as_int(param(p, 3) or "0", 0, 65535)
            maxn = as_int(param(p, 4), 1, MAX_RECV) if param(p, 4) is not None else MAX_RECV
        else:
            s = self._sock(p, 0)
            mode = 0
            timeout = as_int(param(p, 0), 0, 65535)
            flags = as_int(param(p, 1) or "0", 0, 0xFFFF)
            maxn = MAX_RECV
        wait = 0.0 if flags & RECV_DONTWAIT else (None if timeout == 0 else float(timeout))
        s.wait_readable(timeout=wait, stop=self.m._stop)
        try:
            # Take the bytes and re-arm POLLIN in one step under the poll lock, so check_poll never
            # sees "armed" together with readiness from before this read (a stale POLLIN).
            with self._lock:
                data = s.take(maxn, peek=bool(flags & RECV_PEEK))
                if data:  # a read that returned data re-arms POLLIN (do_recv in sm_at_socket.c)
                    self._in_armed.add(s.handle)
        except SocketFailure as exc:
            self._poll_after_reply(s)
            raise AtFail(None, str(exc)) from exc
        self._poll_after_reply(s)
        if data is None:
            raise AtFail(None, "receive timed out")
        if not data:
            # Peer closed: OK without an #XRECV line, in both dialects [sm_at_socket.c do_recv;
            # sdk-nrf serial_lte_modem slm_at_socket.c].
            return ok()
        if self.sm:
            shown = data.hex().upper().encode() if mode == 1 else data
            return f"\r\n#XRECV: {s.handle},{mode},{len(data)}\r\n".encode() + shown + b"\r\nOK\r\n"
        return f"\r\n#XRECV: {len(data)}\r\n".encode() + data + b"\r\nOK\r\n"

    # --- close ---------------------------------------------------------------------------------

    def xclose(self, c: Command) -> bytes:
        if c.form == "exec":
            handles = sorted(self.socks)
            for h in handles:
                self._close(h)
            return ok(*(f"#XCLOSE: {h},0" for h in handles))
        if c.form != "set":
            raise AtFail()
        h = as_int(param(c.params, 0), 0, MAX_SOCKETS - 1)
        if h not in self.socks:
            raise AtFail()
        self._close(h)
        return ok(f"#XCLOSE: {h},0")

    # --- readiness -----------------------------------------------------------------------------

    def _arm_out(self, h: int) -> None:
        with self._lock:
            self._out_armed.add(h)

    def xapoll(self, c: Command) -> bytes:
        if c.form != "set":
            raise AtFail()
        h_param = param(c.params, 0)
        op = as_int(param(c.params, 1), 0, 1)
        handles = [as_int(h_param, 0, MAX_SOCKETS - 1)] if h_param is not None else sorted(self.socks)
        for h in handles:
            if h not in self.socks:
                raise AtFail()
        events = as_int(param(c.params, 2), 0, 0xFF) if op == 1 else 0
        if events & ~(POLLIN | POLLOUT):
            raise AtFail(None, "#XAPOLL takes POLLIN (1) and POLLOUT (4) only")  # [sm_at_socket.c]
        with self._lock:
            if h_param is None:  # no handle: every socket, open or opened later
                self._apoll_default = events if op == 1 else 0
            for h in handles:
                if op == 1:
                    self._apoll[h] = events
                    self._in_armed.add(h)
                    self._out_armed.add(h)
                else:
                    self._apoll.pop(h, None)
        # URCs caused by arming go after the OK, as the modem answers the command first.
        def fire() -> None:
            for h in handles:
                if h in self.socks:
                    self.check_poll(self.socks[h])

        self.m.call_soon(fire)
        return ok()

    def _poll_after_reply(self, s: SimSocket) -> None:
        """Re-check readiness on the worker once the current reply is out, so a URC follows it."""
        self.m.call_soon(lambda: self.check_poll(s))

    def on_event(self, s: SimSocket) -> None:
        """Pump thread: data, EOF or an error arrived on ``s``."""
        with self._changed:
            self._changed.notify_all()
        self.check_poll(s)

    def check_poll(self, s: SimSocket) -> None:
        """Fire ``#XAPOLL`` if an armed event is ready (POLLIN/POLLOUT once until re-armed), then push
        received data when ``#XRECVCFG`` auto-receive is on. Writes happen under the poll lock, so two
        threads can never reorder pushed data."""
        if not self.sm:
            return
        h = s.handle
        with self._lock:
            # Readiness is read under the same lock that #XRECV holds while it takes bytes and
            # re-arms POLLIN: read outside it, a pump thread could pair pre-read readiness with the
            # post-read re-arm and announce POLLIN for data that is already gone.
            if self.socks.get(h) is not s:
                return
            ready = s.readiness()
            if ready & (POLLERR | POLLHUP):
                ready |= POLLIN  # a read returns at once (the error, or end of stream)
            if ready & POLLIN and ready & POLLHUP and not s.recv_pending() and h in self._eof_pushed:
                ready &= ~POLLIN  # end of stream already pushed: nothing left to announce
            mask = self._apoll.get(h, 0)
            rev = 0
            if ready & POLLIN and mask & POLLIN and h in self._in_armed:
                rev |= POLLIN
            if ready & POLLOUT and mask & POLLOUT and h in self._out_armed:
                rev |= POLLOUT
            if rev & POLLIN:
                self._in_armed.discard(h)
            if rev & POLLOUT:
                self._out_armed.discard(h)
            if rev:
                self.m.urc(f"#XAPOLL: {h},{rev}")
            if self._recvcfg.get(h, 0) & 1 and s.connected and not self.m.in_datamode:
                self._push(s)

    def _push(self, s: SimSocket) -> None:
        """Auto-reception in AT-command mode (lock held): what ``AT#XRECV=<h>,0,64,0`` would answer,
        as a URC with CR LF after the data, or a lone CR LF at end of stream [sm_at_socket.c auto_reception]."""
        h = s.handle
        try:
            data = s.take(MAX_RECV, peek=False)
        except SocketFailure:
            return  # do_recv fails: logged by the modem, nothing pushed
        if data is None:
            return
        if data:
            self._in_armed.add(h)  # do_recv re-arms POLLIN
            self.m.respond(f"\r\n#XRECV: {h},0,{len(data)}\r\n".encode() + data + b"\r\n")
            if s.recv_pending():  # poll is level-triggered: what is left fires again at once
                self.m.call_soon(lambda: self.check_poll(s))
        elif h not in self._eof_pushed:
            self._eof_pushed.add(h)
            self.m.respond(b"\r\n")

    def poll_all(self) -> None:
        """Re-check every socket (after data mode, when the modem handles the events it deferred)."""
        for s in list(self.socks.values()):
            self.check_poll(s)

    def xrecvcfg(self, c: Command) -> bytes:
        """``AT#XRECVCFG=[<h>],<flags>[,<hex>]``: flags 1 = auto-receive in AT-command mode, 2 = in data
        mode; only binary (hex 0) AT-mode reception is simulated [ncs-serial-modem at_socket.rst]."""
        if c.form == "read":
            with self._lock:
                lines = [f"#XRECVCFG: {h},{f},0" for h, f in sorted(self._recvcfg.items()) if f]
            return ok(*lines)
        if c.form != "set":
            raise AtFail()
        h_param = param(c.params, 0)
        flags = as_int(param(c.params, 1), 0, 3)
        if as_int(param(c.params, 2) or "0", 0, 1) != 0 or flags & 2:
            raise AtFail(None, "only binary auto-reception in AT-command mode (flags 1) is simulated")
        with self._lock:
            if h_param is None:
                self._recvcfg_default = flags
                handles = sorted(self.socks)
            else:
                h = as_int(h_param, 0, MAX_SOCKETS - 1)
                if h not in self.socks:
                    raise AtFail()
                handles = [h]
            for h in handles:
                self._recvcfg[h] = flags

        def fire() -> None:  # data that is already waiting is pushed after the OK
            for h in handles:
                if h in self.socks:
                    self.check_poll(self.socks[h])

        self.m.call_soon(fire)
        return ok()

    def xpoll(self, c: Command) -> bytes:
        """SLM ``AT#XPOLL=<timeout_ms>[,<h>...]``: wait until a socket is readable/failed."""
        if c.form != "set":
            raise AtFail()
        timeout_ms = as_int(param(c.params, 0), 0, 600000)
        handles = [as_int(x, 0, MAX_SOCKETS - 1) for x in c.params[1:]] or sorted(self.socks)
        deadline = time.monotonic() + timeout_ms / 1000
        interest = POLLIN | POLLERR | POLLHUP
        with self._changed:
            while True:
                ready = [(h, self.socks[h].readiness() & interest) for h in handles if h in self.socks]
                ready = [(h, r) for h, r in ready if r]
                left = deadline - time.monotonic()
                if ready or left <= 0 or self.m._stop.is_set():
                    break
                self._changed.wait(min(left, 0.5))
        return ok(*(f'#XPOLL: {h},"0x{r:04x}"' for h, r in ready))
