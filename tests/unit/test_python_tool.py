import pytest

from noetl_common.tools import run_python


def test_inputs_as_variables_and_declared_input_wins_over_alias():
    out = run_python("print('x')\nresult = {'a': a, 'alias': input_data}", {"a": 1, "input_data": "mine"})
    assert out.ok and out.result == {"a": 1, "alias": "mine"} and out.stdout == "x\n"


@pytest.mark.parametrize(("code", "needle"), [
    ("result = {'s': {1, 2}}", "set"),
    ("result = float('nan')", "Out of range float"),
    ("result = object()", "object"),
])
def test_non_json_results_are_errors_naming_the_problem(code, needle):
    out = run_python(code, {})
    assert not out.ok and "not JSON-serialisable" in out.error and needle in out.error


def test_return_and_main_conventions():
    assert run_python("return {'r': 1}", {}).result == {"r": 1}
    assert run_python("def main(n):\n    return {'n': n}", {"n": 3, "extra": 0}).result == {"n": 3}


def test_inputs_are_also_args_and_context_is_what_the_command_carries():
    out = run_python("result = {'a': args.get('a'), 'w': context.get('w')}", {"a": 1}, context={"w": "x"})
    assert out.ok and out.result == {"a": 1, "w": "x"}
