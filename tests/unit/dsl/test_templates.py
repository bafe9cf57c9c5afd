import pytest

from noetl_common.dsl.templates import Renderer, TemplateError

R = Renderer()


@pytest.mark.parametrize(("template", "ctx", "expected"), [
    ("{{ n }}", {"n": 3}, 3),
    ("{{ xs }}", {"xs": [1, {"a": True}]}, [1, {"a": True}]),
    ("{{ flag }}", {"flag": False}, False),
    ("n={{ n }}", {"n": 3}, "n=3"),
    ("{{ missing }}", {}, None),
    ("{{ a.b.c }}", {"a": {}}, None),
    ("{{ a.b | default('d') }}", {"a": {}}, "d"),
    ("{{ xs | length }}", {"xs": [1, 2]}, 2),
    ("{{ d | tojson }}", {"d": {"k": 1}}, '{"k": 1}'),
    ("{{ s | fromjson }}", {"s": '{"k": [1]}'}, {"k": [1]}),
    ("plain", {}, "plain"),
])
def test_typed_rendering(template, ctx, expected):
    assert R.render(template, ctx) == expected


def test_recursive():
    assert R.render({"a": ["{{ x }}", {"b": "{{ x + 1 }}"}]}, {"x": 1}) == {"a": [1, {"b": 2}]}


@pytest.mark.parametrize(("cond", "expected"), [
    (None, True), (True, True), (False, False), ("{{ x > 1 }}", True), ("x > 5", False), ("{{ '' }}", False),
    ("{{ 'no' }}", False), ("{{ [] }}", False), ("{{ 'yes' }}", True)])
def test_conditions(cond, expected):
    assert R.truthy(cond, {"x": 2}) is expected


def test_syntax_error_quotes_the_template():
    with pytest.raises(TemplateError, match=r"template '\{\{ a'"):
        R.render("{{ a", {})


def test_step_accessors_data_and_python_era_command_0():
    from noetl_common.dsl.scopes import with_data

    sql = {"columns": ["n"], "rows": [{"n": 1}], "row_count": 1}
    assert with_data(sql)["command_0"] is sql
    assert with_data(sql)["data"] == {**sql, "command_0": sql}  # `{{ step.data.command_0.rows }}` too
    assert with_data({"affected_rows": 3})["command_0"] == {"affected_rows": 3}
    assert "command_0" not in with_data({"a": 1}) and with_data({"a": 1})["context"] == {"a": 1}
    assert with_data({"data": 2, "context": 3}) == {"data": 2, "context": 3} and with_data([1]) == [1]


def test_step_context_accessor_as_on_noetl_server():
    # `{{ start.greeting }}` and `{{ start.context.greeting }}` both answer (NoETL's server does).
    from noetl_common.dsl.scopes import with_data

    ctx = {"start": with_data({"greeting": "hi"})}
    assert R.render("{{ start.greeting }}/{{ start.context.greeting }}/{{ start.data.greeting }}", ctx) == "hi/hi/hi"


@pytest.mark.parametrize(("template", "ctx", "expected"), [
    # a key the dict lacks is undefined, never the dict's Python method of that name
    ("{{ page.items | default([]) }}", {"page": {"paging": {}}}, []),
    ("{{ page.values }}", {"page": {}}, None),
    ("{{ page.items }}", {"page": {"items": [1]}}, [1]),
    # NoETL's default: undefined and none alike; Jinja's boolean flag for any falsy value
    ("{{ a.b | default(3) }}", {"a": {"b": None}}, 3),
    ("{{ a.b | default(3) }}", {"a": {"b": 0}}, 0),
    ("{{ a.b | default(3, true) }}", {"a": {"b": 0}}, 3),
    ("n={{ a.b | d(4) }}", {"a": {}}, "n=4"),
])
def test_default_and_missing_keys_as_noetl(template, ctx, expected):
    assert R.render(template, ctx) == expected
