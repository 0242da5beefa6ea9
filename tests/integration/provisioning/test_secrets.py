"""Private keys and ownership tokens never appear in any output, at any verbosity, success or failure.

Every flow runs the real ``nrfprov -vv provision`` (debug logging: every effect, every AT command) on
a simulated modem against the stand-in, once to success and once failing after the credentials
arrived; the test knows each key and token the stand-in handed out and looks for them, and for
"PRIVATE KEY", in everything the process wrote (stdout, stderr) and in the state folder besides the
journal.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.crashrig import Lab, Scenario, open_lab, scan_for_secrets, secret_hits

pytestmark = pytest.mark.integration

FLOWS = [Scenario("split", "offload"), Scenario("split", "native"), Scenario("combined", "native", fmt="cbor"),
         Scenario("combined", "host"), Scenario("csr", "offload"), Scenario("csr", "native", fmt="cbor")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = open_lab(tmp_path_factory.mktemp("secrets"))
    try:
        yield lab
    finally:
        lab.close()
        lab.cloud.stop()


@pytest.mark.parametrize("fail", [False, True], ids=["success", "failure"])
@pytest.mark.parametrize("sc", FLOWS, ids=[f"{s.flow}-{s.backend}" for s in FLOWS])
def test_no_key_or_token_in_any_output_at_debug_level(lab: Lab, sc: Scenario, fail: bool) -> None:
    dev = lab.device(sc, f"secrets-{sc.flow}-{sc.backend}-{fail}")
    if fail:
        # After the credentials arrived: the certificate write fails (memory full) on every attempt.
        dev.sim.fail_command("AT%CMNG=0,50,1", cme=515, times=None)
    out = dev.run(verbose=2)
    assert (out.returncode != 0) == fail, out.stderr[-2000:]
    assert "DEBUG" in out.stderr  # -vv really logged
    keys, tokens = lab.cloud.secrets()
    assert keys or sc.flow == "csr"
    assert tokens or sc.flow == "split"
    assert secret_hits(out.stdout + out.stderr, keys, tokens) == []
    assert scan_for_secrets(dev.state, keys, tokens) == []
