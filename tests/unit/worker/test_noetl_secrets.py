"""`noetl.worker.secrets`, the name NoETL's worker offers a python step (the interactive_brokers
playbooks import it): the control plane's credential answer shaped as NoETL's record."""

from __future__ import annotations

from noetl.worker.secrets import fetch_credential_by_key, record


def test_record_has_the_data_nested_and_its_fields_at_the_top():
    body = {"name": "ib_paper", "type": "Interactive_Brokers", "data": {"base_url": "http://gw/v1/api", "key": "x"}}
    rec = record("ib_paper", body)
    assert rec["data"] == {"base_url": "http://gw/v1/api", "key": "x"} and rec["base_url"] == "http://gw/v1/api"
    assert rec["key"] == "ib_paper" and rec["type"] == "interactive_brokers" and rec["secret_name"] == "ib_paper"
    # NoETL's CLI nests a credential's payload once more under data.data
    assert record("k", {"type": "postgres", "data": {"data": {"db_host": "h"}}})["data"] == {"db_host": "h"}
    assert record("k", {"type": "postgres", "data": "opaque"})["service"] == "postgres"


def test_an_unreachable_or_unnamed_control_plane_gives_an_empty_record(monkeypatch):
    monkeypatch.setenv("NOETL_SERVER_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    assert fetch_credential_by_key("ib_paper") == {} and fetch_credential_by_key("") == {}
    monkeypatch.delenv("NOETL_SERVER_URL")
    assert fetch_credential_by_key("ib_paper") == {}
