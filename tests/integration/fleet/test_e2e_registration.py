"""Every NoETL e2e playbook (../shared/e2e, a snapshot of noetl/e2e `fixtures/playbooks/`)
registered through the router of a live fleet, as a NoETL user would: none may get a server
error, and each one refused is refused for a reason NoETL would refuse it for too."""

from __future__ import annotations

import base64
from pathlib import Path

from .conftest import LiveFleet

E2E = Path(__file__).resolve().parents[4] / "shared" / "e2e" / "fixtures" / "playbooks"

# file -> a fragment of the 422 message. Each is a real defect of the playbook, not a shape we lack.
EXPECTED_REFUSALS = {
    # `command:` sits beside `tool:` instead of inside it, so the postgres tool has no SQL: the
    # file exists to check that registration says so (NoETL: "tool is required" family of errors).
    "broken_playbooks/should_error_tool_is_required.yaml":
        "step 'insert_report': tool of kind postgres needs one of: command",
}


async def test_every_e2e_playbook_registers_or_is_refused_for_a_real_defect(live_fleet: LiveFleet, http):
    files = sorted(E2E.rglob("*.yaml"))
    assert len(files) >= 150, f"the e2e snapshot is missing ({E2E})"
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
    assert not server_errors, server_errors
    assert set(refused) == set(EXPECTED_REFUSALS), refused
    for name, fragment in EXPECTED_REFUSALS.items():
        assert refused[name].startswith("422") and fragment in refused[name], (name, refused[name])
    assert len(registered) == len(files) - len(EXPECTED_REFUSALS)
