"""Process hygiene and the CLI: no mosquitto outlives its owner, ports, restarts, `nrfprov cloud up`."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from fixtures.cloud import MqttProbe, mosquitto_children
from nrfprov.cloud import LocalAwsIot, broker
from nrfprov.errors import ConnectError, UsageError

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[3] / "src"


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait for any process (not only our child) to exit, via a pidfd: no sleep loop."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_context_manager_stops_the_broker(tmp_path: Path) -> None:
    with LocalAwsIot(tmp_path / "s", device_key_type="ec") as cloud:
        pid = cloud.broker_pid
        assert pid is not None and _alive(pid)
        assert pid in mosquitto_children()
        assert json.loads(cloud.endpoint_path.read_text()) == {"host": "localhost", "port": cloud.port}
    assert not _alive(pid)
    assert not (tmp_path / "s" / "endpoint.json").exists()


def _owner_script(state: Path, tail: str) -> str:
    return textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from pathlib import Path
        from nrfprov.cloud import LocalAwsIot
        cloud = LocalAwsIot(Path({str(state)!r}), device_key_type="ec").start()
        print(cloud.broker_pid, flush=True)
    """) + tail


def test_atexit_stops_the_broker_of_an_owner_that_forgot(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _owner_script(tmp_path / "s", "")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[0])
    assert _wait_gone(pid) and not _alive(pid)


def test_broker_dies_with_a_killed_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _owner_script(tmp_path / "s", "sys.stdin.read()\n")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert _alive(pid)
    finally:
        owner.kill()  # SIGKILL: no atexit, no context manager; PR_SET_PDEATHSIG must do it
        owner.wait()
        if owner.stdin:
            owner.stdin.close()
        if owner.stdout:
            owner.stdout.close()
    assert _wait_gone(pid), f"mosquitto {pid} survived its killed owner"


def test_a_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConnectError, match="address already in use") as err:
            LocalAwsIot(tmp_path / "s", port=port, device_key_type="ec").start()
        assert err.value.port == port
    assert mosquitto_children() == []


def test_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the race "port free when probed, taken when mosquitto binds" on the first attempt.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real = broker.free_port
        picks = iter([taken])
        monkeypatch.setattr(broker, "free_port", lambda: next(picks, None) or real())
        with LocalAwsIot(tmp_path / "s", device_key_type="ec") as cloud:
            assert cloud.port != taken
            assert any("Address already in use" in line
                       for line in (tmp_path / "s" / "mosquitto.log").read_text().splitlines())
            with MqttProbe.for_claim(cloud, "after-retry") as c:
                assert c.connect()


def test_one_stand_in_per_state_dir(local_aws: LocalAwsIot) -> None:
    with pytest.raises(UsageError, match="already runs"):
        LocalAwsIot(local_aws.state_dir, device_key_type="ec").start()
    with MqttProbe.for_claim(local_aws, "first-still-serves") as c:
        assert c.connect()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with LocalAwsIot(state, device_key_type="ec") as cloud:
        cert, key = cloud.issue_identity("keeper")
        cloud.grant_device("keeper", "keeper")
        ca = cloud.ca_path.read_bytes()
    with LocalAwsIot(state, device_key_type="ec") as cloud:
        assert cloud.ca_path.read_bytes() == ca
        assert [r.common_name for r in cloud.certificates()] == ["keeper"]
        with MqttProbe(cloud, cert, key, "keeper") as dev:
            assert dev.connect()
            assert dev.publish("$aws/things/keeper/shadow/get") in (0, 16)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job would ignore SIGINT


def test_cli_up_serves_requests_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "cli-state"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    up = subprocess.Popen(
        [sys.executable, "-m", "nrfprov", "cloud", "up", "--state", str(state), "--json", "--device-key", "ec"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_sigint,
    )
    try:
        assert up.stdout is not None
        info = json.loads(up.stdout.readline())
        assert json.loads(Path(info["endpoint"]).read_text()) == {"host": "localhost", "port": info["port"]}
        assert (os.stat(info["claim_key"]).st_mode & 0o777) == 0o600
        broker_pid = int((state / "broker.pid").read_text())
        # Another "terminal": a plain paho client with only the files `up` wrote.
        shim = SimpleNamespace(host=info["host"], port=info["port"], ca_path=Path(info["ca"]))
        with MqttProbe(shim, Path(info["claim_cert"]), Path(info["claim_key"]), "term-2") as c:  # type: ignore[arg-type]
            assert c.connect()
            c.subscribe("certificate/term-2/create/accepted/+")
            assert c.publish("certificate/term-2/create") == 0
            assert sorted(c.get()[0].rsplit("/", 1)[1] for _ in range(2)) == ["cert", "key"]
        listed = subprocess.run([sys.executable, "-m", "nrfprov", "cloud", "list", "--state", str(state), "--json"],
                                capture_output=True, text=True, env=env, timeout=30)
        [rec] = json.loads(listed.stdout)
        revoked = subprocess.run(
            [sys.executable, "-m", "nrfprov", "cloud", "revoke", rec["certificate_id"], "--state", str(state)],
            capture_output=True, text=True, env=env, timeout=30)
        assert revoked.returncode == 0 and "running broker reloaded" in revoked.stdout
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=15) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for stream in (up.stdout, up.stderr):
            if stream:
                stream.close()
    assert _wait_gone(broker_pid)


def test_cli_revoke_unknown_id_is_a_usage_error(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-m", "nrfprov", "cloud", "revoke", "ab" * 32, "--state",
                        str(cloud.state_dir)], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2
    assert "no certificate" in r.stderr
