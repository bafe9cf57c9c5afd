"""NoETL result-store references: parsing, formatting, and finding one in a result envelope."""

from __future__ import annotations

import pytest

from noetl_common.result_refs import ResultRef, parse_ref, ref_of


def test_round_trip_and_names_with_slashes():
    ref = ResultRef(execution_id=12, name="loop/item", result_id=99)
    assert ref.uri() == "noetl://execution/12/result/loop/item/99"
    assert parse_ref(ref.uri()) == ref


@pytest.mark.parametrize("text,fragment", [
    ("noetl://exec/1/result/a/2", "must look like"),
    ("noetl://execution/1/results/a/2", "must look like"),
    ("noetl://execution/1/result/a", "must look like"),
    ("noetl://execution/one/result/a/2", "execution id"),
    ("noetl://execution/1/result/a/two", "result id"),
    ("noetl://execution/1/result//2", "empty result name"),
])
def test_bad_refs_say_what_is_wrong(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_ref(text)


def test_ref_of_a_result_envelope():
    uri = "noetl://execution/5/result/s/7"
    assert ref_of({"status": "ok", "reference": {"kind": "result_ref", "ref": uri}}) == ResultRef(5, "s", 7)
    assert ref_of({"status": "ok", "reference": {"ref": uri}}) == ResultRef(5, "s", 7)  # kind defaults
    for value in ({"reference": {"kind": "arrow_ipc", "shm_name": "x"}}, {"reference": {"ref": "s3://b/k"}},
                  {"reference": "noetl://execution/5/result/s/7"}, {"rows": [1]}, [1], None, "text"):
        assert ref_of(value) is None
