"""A group commit's write sets merged into one: the projector's messages of all its writes become
one outbox row (one insert, one delete, one delivery), with each execution's events in order and
the newest id of the group; command notifications are left as they are."""

from __future__ import annotations

from noetl_api_shard.store.outbox import OutboxRow
from noetl_api_shard.store.writes import MAX_MIRROR_EVENTS, Expect, WriteSet, merge, one_mirror_row
from noetl_common.streams import events_subject
from noetl_common.wire.internal import CommandNotification, EventEnvelope, EventsMessage


def mirror(row_id: int, execution_id: int, *event_ids: int) -> OutboxRow:
    return OutboxRow(id=row_id, execution_id=execution_id, event_id=None, subject=events_subject(0, execution_id),
                     payload=EventsMessage(events=[EventEnvelope(event_id=str(e), execution_id=str(execution_id))
                                                   for e in event_ids]))


def notification(row_id: int, execution_id: int) -> OutboxRow:
    return OutboxRow(id=row_id, execution_id=execution_id, event_id=row_id, subject=f"noetl.commands.default.{execution_id}",
                     payload=CommandNotification(execution_id=execution_id, event_id=row_id))


def test_a_group_sends_its_events_as_one_row_under_its_newest_id():
    a = WriteSet(outbox=[notification(11, 1), mirror(12, 1, 101, 102)])
    b = WriteSet(outbox=[mirror(30, 2, 201)])
    c = WriteSet(outbox=[mirror(20, 3, 301, 302)])
    ws, expect = merge([(a, Expect(executions=1)), (b, Expect(executions=1)), (c, Expect(executions=0))])
    assert expect.executions == 2
    assert [r.id for r in ws.outbox] == [11, 30]
    assert isinstance(ws.outbox[0].payload, CommandNotification)
    row = ws.outbox[1]
    assert row.subject == events_subject(0, 2) and row.execution_id == 2
    assert [(e.execution_id, e.event_id) for e in row.payload.events] == [
        ("1", "101"), ("1", "102"), ("2", "201"), ("3", "301"), ("3", "302")]


def test_rows_without_a_second_events_message_are_unchanged():
    rows = [notification(1, 1), mirror(2, 1, 5), notification(3, 2)]
    assert one_mirror_row(rows) == rows
    assert one_mirror_row([]) == []


def test_a_merged_row_holds_no_more_events_than_one_batch_may_log():
    """So it stays within what the projector takes per request and JetStream per message."""
    half = MAX_MIRROR_EVENTS // 2 + 1
    rows = [mirror(10, 1, *range(1000, 1000 + half)), mirror(40, 2, 2000), mirror(20, 3, *range(3000, 3000 + half)),
            mirror(30, 4, *range(4000, 4000 + 2 * MAX_MIRROR_EVENTS))]
    merged = one_mirror_row(rows)
    assert [(r.id, len(r.payload.events)) for r in merged] == [(40, half + 1), (20, half), (30, 2 * MAX_MIRROR_EVENTS)]
    assert sorted(int(e.event_id) for r in merged for e in r.payload.events) == sorted(
        int(e.event_id) for r in rows for e in r.payload.events)


def test_only_a_stage_opening_or_closing_transaction_carries_the_stage_parts():
    """The frames runtime adds nothing to any other write: its parts are absent unless used."""
    from noetl_api_shard.store.writes import StageClose, StageRow, _parts, statement

    plain = WriteSet(outbox=[notification(1, 1)])
    names = tuple(name for name, _ in _parts(plain))
    assert names == ("ins_outbox",) and "stage" not in statement(names, (1,))
    opened = WriteSet(outbox=[notification(1, 1)], stages=[StageRow(
        stage_id=5, execution_id=1, step_name="s", loop_event_id="1", frame_policy={}, opened_event_id=6,
        parent_event_id=None)], stage_closes=[StageClose(execution_id=1, stage_id=4, status="COMPLETED",
                                                         closed_event_id=7)])
    assert tuple(name for name, _ in _parts(opened)) == ("ins_outbox", "ins_stage", "upd_stage")
    merged, _ = merge([(plain, Expect(executions=0)), (opened, Expect(executions=0))])
    assert [s.stage_id for s in merged.stages] == [5] and [s.stage_id for s in merged.stage_closes] == [4]
