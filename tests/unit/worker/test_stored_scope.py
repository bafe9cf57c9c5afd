"""A pipeline's scope gets the stored results its tasks read past their stubs (noetl_worker.stored_scope)."""

from noetl_common.engine.stored import compact
from noetl_worker.stored_scope import fields_read, load_read_stubs

URI = "noetl://execution/1/result/big/9"
ROWS = [{"id": i, "pad": "p" * 100} for i in range(2000)]
STORED = {"result": {"count": 2000, "rows": ROWS}, "tasks": {"gen": {"count": 2000, "rows": ROWS}}, "ctx_updates": {}}
STUB = compact({**STORED["result"], "results": STORED["tasks"], "gen": STORED["tasks"]["gen"],
                "_ref": {"kind": "result_ref", "ref": URI}, "_store": "db"})


class Store:
    def __init__(self):
        self.loads = []

    async def get(self, uri):
        self.loads.append(uri)
        return STORED


def test_fields_read_finds_dotted_and_subscript_reads_of_that_name_only():
    text = "{{ big.rows }} {{ big['data'] }} {{ x.big.no }} {{ bigger.no }} {{ big . count }}"
    assert fields_read(text, "big") == {"rows", "data", "count"}


async def test_a_stub_read_past_its_fields_is_loaded_and_one_read_for_kept_fields_is_not():
    store = Store()
    reads_rows = [{"name": "t", "kind": "python", "input": {"rows": "{{ big.rows }}"}}]
    scope = await load_read_stubs(reads_rows, {"big": STUB, "n": 1}, store.get)
    assert scope["big"]["rows"] == ROWS and scope["big"]["_ref"]["ref"] == URI and scope["n"] == 1
    assert store.loads == [URI]
    kept_only = [{"name": "t", "kind": "python", "input": {"c": "{{ big.count }}", "r": "{{ big._ref }}",
                                                            "whole": "{{ big }}"}}]
    assert await load_read_stubs(kept_only, {"big": STUB}, store.get) == {"big": STUB}
    assert store.loads == [URI]
