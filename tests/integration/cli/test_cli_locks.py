"""One nrfprov per serial port and per journal folder: the second real process is refused at once.

Witnesses: the simulator's command log (the second process never sent a command) and the stand-in's
request counters (it never asked the cloud). The first process is held inside one AT command by the
simulator's delay fault, and the test knows it is there from its own ``-vv`` log line.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from integration.cli.clirun import run, start, wait_for_line
from integration.cli.provconf import claim_modems, split_offload_conf
from nrfprov.cloud import LocalAwsIot
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

HOLD_S = 30.0  # the first process waits this long inside one command; the test ends it sooner


def test_a_second_run_on_one_port_is_refused_before_a_byte(
    sim_factory: Callable[..., SimulatedModem], tmp_path: Path
) -> None:
    # The first process holds the port while it waits for LTE registration, which this simulator
    # never grants in time; the modem itself stays idle and answers anyone who gets the port.
    sim = sim_factory(dialect="sm", baud=0, attach_delay=600)
    link = tmp_path / "nrf91"
    link.symlink_to(sim.port_url)
    first = start("-vv", "tls-check", "--port", sim.port_url, "--backend", "offload",
                  "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost", "--set", "CONFIG_AWS_IOT_SEC_TAG=43")
    try:
        wait_for_line(first, "→ AT+CEREG?")
        wait_for_line(first, "← Ok")  # its answer is in: now the first process only waits for a URC
        commands_before = list(sim.command_log)
        for port in (sim.port_url, str(link)):  # the same device through a symlink is the same port
            second = run("creds", "list", "--port", port)
            assert second.returncode == 2, second.stderr
            assert f"in use by process {first.pid}" in second.stderr and "nothing was sent" in second.stderr
            assert "Traceback" not in second.stderr
        assert list(sim.command_log) == commands_before  # the second process never reached the modem
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
        first.communicate(timeout=30)
    # A SIGKILLed holder leaves no lock behind: the next run gets the port.
    done = run("at", "--port", str(link), "AT+CGSN", timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sim.identity.imei


def test_two_runs_sharing_a_journal_folder_second_refused_before_any_request(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot, tmp_path: Path
) -> None:
    sims = [sim_factory(dialect="sm", baud=0) for _ in range(2)]
    claim_modems(local_aws, *sims)
    conf = split_offload_conf(local_aws, tmp_path, "dev-a")
    shared = tmp_path / "shared-journal"
    sims[0].delay_command("AT+CGSN", HOLD_S, times=1)  # the first run reads the IMEI, and waits there
    first = start("-vv", "provision", "--port", sims[0].port_url, "--conf", str(conf), "--state", str(shared),
                  "--json")
    try:
        wait_for_line(first, "→ AT+CGSN")
        before = list(sims[1].command_log)
        second = run("provision", "--port", sims[1].port_url, "--conf", str(conf), "--state", str(shared),
                     timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"journal folder {shared}" in second.stderr and f"process {first.pid}" in second.stderr
        assert list(sims[1].command_log) == before  # refused before its modem heard a byte
        assert sum(local_aws.request_counts().values()) == 0
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert not (shared / "provisioning.json").exists()
