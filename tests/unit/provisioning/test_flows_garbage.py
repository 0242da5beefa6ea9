"""Garbage for the reply collectors: arbitrary bytes on any topic give a result, nothing, or our
own typed error, never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nrfprov.errors import NrfprovError
from nrfprov.provisioning import flows

TOPICS = [
    "certificate/dev-1/create/accepted/key",
    "certificate/dev-1/create/accepted/cert",
    "certificate/dev-1/create/rejected",
    "$aws/certificates/create/json/accepted",
    "$aws/certificates/create/cbor/accepted",
    "$aws/certificates/create/cbor/rejected",
    "$aws/certificates/create-from-csr/json/accepted",
    "$aws/provisioning-templates/t/provision/json/accepted",
    "$aws/provisioning-templates/t/provision/cbor/rejected",
    "unrelated/topic",
]


def _collectors() -> list[object]:
    return [flows.SplitCollector("dev-1"), flows.combined_collector("json"), flows.combined_collector("cbor"),
            flows.csr_collector("json"), flows.RegisterCollector("t", "json"), flows.RegisterCollector("t", "cbor")]


@settings(max_examples=150, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=600))
def test_garbage_gives_our_errors_only(topic: str, payload: bytes) -> None:
    for c in _collectors():
        try:
            c.feed(topic, payload)  # type: ignore[attr-defined]
        except NrfprovError:
            pass


@settings(max_examples=100, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["certificateId", "certificatePem", "privateKey", "thingName",
                                            "certificateOwnershipToken", "statusCode", "errorCode", "x"]),
                           st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers()))))
@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_wrong_shapes_give_our_errors_only(fmt: str, doc: dict[str, object]) -> None:
    payload = flows.encode(fmt, doc)
    for c in _collectors():
        for topic in TOPICS:
            try:
                c.feed(topic.replace("json", fmt), payload)  # type: ignore[attr-defined]
            except NrfprovError:
                pass
