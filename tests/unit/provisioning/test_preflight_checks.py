"""The checks made on local inputs before anything is requested (sans-IO, ``now`` as a parameter)."""

from __future__ import annotations

import pytest
from provpki import NOW, Pki

from nrfprov.errors import ConfigError, UsageError
from nrfprov.provisioning import preflight


def test_a_good_ca_passes_and_its_neighbours_do_not(pki: Pki) -> None:
    preflight.check_ca(pki.ca_pem, "ca.pem", sec_tag=50, now=NOW)
    preflight.check_ca(pki.ca_pem + pki.ca_pem, "ca.pem", sec_tag=2147483647, now=NOW)
    with pytest.raises(ConfigError, match=r"ca\.pem: holds something besides PEM certificates"):
        preflight.check_ca("# my root\n" + pki.ca_pem, "ca.pem", sec_tag=50, now=NOW)
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        preflight.check_ca("\n\n", "ca.pem", sec_tag=50, now=NOW)
    broken = pki.ca_pem.replace(pki.ca_pem.splitlines()[3], "A" * len(pki.ca_pem.splitlines()[3]))
    with pytest.raises(ConfigError, match="does not parse"):
        preflight.check_ca(broken, "ca.pem", sec_tag=50, now=NOW)


def test_the_ca_write_must_fit_one_cmng_command_with_this_sec_tag(pki: Pki) -> None:
    # Grow a bundle until the command (AT%CMNG=0,<tag>,0,"...", CR LF) passes 4096 bytes.
    bundle = pki.ca_pem
    while len(bundle) + len(pki.ca_pem) <= 4096 - 30:
        bundle += pki.ca_pem
    preflight.check_ca(bundle, "ca.pem", sec_tag=5, now=NOW)
    with pytest.raises(UsageError, match="4096-byte limit"):
        preflight.check_ca(bundle + pki.ca_pem, "ca.pem", sec_tag=5, now=NOW)


def test_sec_tags_and_names(pki: Pki) -> None:
    preflight.check_sec_tags(provisioned=50, claim=None, backend="native")
    with pytest.raises(UsageError, match="claim sec tag -2"):
        preflight.check_sec_tags(provisioned=50, claim=-2, backend="offload")
    preflight.check_sec_tags(provisioned=50, claim=-2, backend="native")  # no claim tag used
    with pytest.raises(ConfigError, match="template name"):
        preflight.check_names(flow="combined", client_id="nrf-1", template="no spaces allowed", parameters={})
    with pytest.raises(ConfigError, match="too long"):
        preflight.check_names(flow="csr", client_id="nrf-1", template="t", parameters={"K": "v" * 4097})
    preflight.check_names(flow="split", client_id="nrf-1", template="", parameters={})
    with pytest.raises(ConfigError, match="not a valid thing name"):
        preflight.check_names(flow="split", client_id="nrf-{imei}", template="", parameters={})
    preflight.check_placeholders({"SerialNumber": "{imei}", "Id": "{client_id}-x"})
    with pytest.raises(ConfigError, match=r"unknown placeholder \{IMEI\}"):
        preflight.check_placeholders({"SerialNumber": "{IMEI}"})


def test_what_the_cloud_sends_fits_too() -> None:
    preflight.check_expected_sizes(sec_tag=2147483647, with_key=True)
    assert preflight.EXPECTED_KEY_PEM < 4096 - len('AT%CMNG=0,2147483647,2,""\r\n')
