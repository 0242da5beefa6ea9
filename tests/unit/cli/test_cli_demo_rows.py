"""What the demo runs and how a row is judged (the runs themselves: tests/integration/provisioning)."""

from __future__ import annotations

from nrfprov.cli.demo import Combo, Row, combinations

KEYS = {"flow", "format", "backend", "dialect", "ok", "expected_failure", "seconds", "uart_bytes", "air_bytes",
        "error"}


def test_every_working_combination_and_the_failing_one() -> None:
    combos = combinations()
    working = [c for c in combos if not c.expected_failure]
    failing = [c for c in combos if c.expected_failure]
    assert {(c.flow, c.backend) for c in failing} == {("combined", "offload")}
    assert {c.flow for c in working} == {"split", "combined", "csr"}
    assert {c.backend for c in working} == {"native", "offload", "host"}
    assert {c.dialect for c in working} == {"sm", "slm"}
    assert {c.payload_format for c in working if c.flow != "split"} == {"json", "cbor"}
    assert not [c for c in working if c.flow == "combined" and c.backend == "offload"]
    assert len({c.client_id for c in combos}) == len(combos)  # one thing per row
    assert all(c.flow == "csr" for c in combinations("csr"))


def test_row_judgement_and_json_keys() -> None:
    bad = Combo("combined", "json", "offload", "sm", expected_failure=True)
    assert Row(bad, ok=False, error_type="ModemTlsLimitError").as_expected
    assert not Row(bad, ok=False, error_type="TransportError").as_expected
    assert not Row(bad, ok=True).as_expected
    good = Combo("split", "-", "native", "slm")
    assert Row(good, ok=True).as_expected and not Row(good).as_expected
    assert set(Row(good).public()) == KEYS
