"""Every NoETL e2e playbook (../shared/e2e, a snapshot of noetl/e2e `fixtures/playbooks/`)
registered through the router of a live fleet, as a NoETL user would: none may get a server
error, and each one refused is refused for a reason NoETL would refuse it for too."""

from __future__ import annotations

import base64
from pathlib import Path

from .conftest import LiveFleet

E2E = Path(__file__).resolve().parents[4] / "shared" / "e2e" / "fixtures" / "playbooks"
E2E_PLAYBOOKS = 155  # the snapshot's playbook files (every *.yaml under fixtures/playbooks)

# file -> a fragment of the 422 message. Each is a real defect of the playbook, not a shape we lack.
EXPECTED_REFUSALS = {
    # `command:` sits beside `tool:` instead of inside it, so the postgres tool has no SQL: the
    # file exists to check that registration says so (NoETL: "tool is required" family of errors).
    "broken_playbooks/should_error_tool_is_required.yaml":
        "step 'insert_report': tool of kind postgres needs one of: command",
}


async def test_every_e2e_playbook_registers_or_is_refused_for_a_real_defect(live_fleet: LiveFleet, http):
    files = sorted(E2E.rglob("*.yaml"))
    assert len(files) == E2E_PLAYBOOKS, f"the e2e snapshot ({E2E}) has {len(files)} playbooks, not {E2E_PLAYBOOKS}"
    registered, refused, server_errors = [], {}, {}
    for path in files:
        name = str(path.relative_to(E2E))
        body = {"content": base64.b64encode(path.read_bytes()).decode(), "resource_type": "Playbook"}
        async with http.post(f"{live_fleet.router}/api/catalog/register", json=body) as r:
            answer = await r.json(content_type=None)
        if r.status == 200:
            registered.append(name)
        elif 400 <= r.status < 500:
            refused[name] = f"{r.status} {answer.get('error') if isinstance(answer, dict) else answer}"
        else:
            server_errors[name] = f"{r.status} {answer}"
    # The report: what registered, and each refusal with its reason (pytest -s shows it).
    print(f"\n{len(registered)} of {len(files)} e2e playbooks registered, {len(refused)} refused, "
          f"{len(server_errors)} server errors")
    for name, reason in sorted(refused.items()):
        print(f"  refused {name}: {reason}")
    assert not server_errors, server_errors
    assert set(refused) == set(EXPECTED_REFUSALS), refused
    for name, fragment in EXPECTED_REFUSALS.items():
        assert refused[name].startswith("422") and fragment in refused[name], (name, refused[name])
    assert len(registered) == len(files) - len(EXPECTED_REFUSALS)
