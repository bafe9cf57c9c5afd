import itertools

from noetl_common.dsl import parse_playbook


def playbook(*steps, workload=None):
    return parse_playbook({"metadata": {"name": "t", "path": "t/p"}, "workload": workload or {},
                           "workflow": list(steps)})


def py(code, **extra):
    return {"kind": "python", "code": code, **extra}


def minter(start=100):
    counter = itertools.count(start)
    return lambda: next(counter)
