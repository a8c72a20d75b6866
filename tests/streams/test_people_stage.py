"""The person-level stage shared by both runtimes (identity -> attribution -> value), and its checkpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.privacy import EraseMarker
from schemas.records import EXAMPLE_ROW, EventRow
from streams.checkpoint import Checkpoint, Effect
from streams.people import PeopleStage, PeopleUpdate, is_order
from streams.people_process import PeopleProcess, PeopleProcessError
from streams.settings import Settings


def orders(n: int) -> list[EventRow]:
    return [
        dataclasses.replace(
            EXAMPLE_ROW,
            message_id=f"m{i}",
            source=f"file:{i}",
            order_id=f"o{i}",
            anonymous_id=f"d{i % 7}",
            person_id=f"d{i % 7}",
            session_id=f"s{i}",
            revenue=20.0 + i,
            event_at=EXAMPLE_ROW.event_at + timedelta(days=i),
        )
        for i in range(n)
    ]


def run(stage: PeopleStage, rows: list[EventRow]) -> PeopleUpdate:
    total = PeopleUpdate()
    for row in rows:
        total.extend(stage.process(row))
    return total


def test_only_completed_orders_with_revenue_count() -> None:
    assert is_order(EXAMPLE_ROW)
    assert not is_order(dataclasses.replace(EXAMPLE_ROW, revenue=None))
    assert not is_order(dataclasses.replace(EXAMPLE_ROW, event="Checkout Started"))


def test_value_is_idempotent_under_redelivery() -> None:
    stage = PeopleStage(Settings())
    rows = orders(14)  # d3 buys o3 and o10
    run(stage, rows)
    again = stage.process(rows[3])  # the same row redelivered (after a crash of the device stage): skipped
    assert (again.values, again.credits, again.links) == ([], [], [])
    resent = stage.process(dataclasses.replace(rows[3], message_id="m3-resent", source="file:99"))  # o3 again
    assert resent.values[0].person_id == "a:d3"
    assert resent.values[0].frequency == 2
    assert resent.values[0].monetary == (23.0 + 30.0) / 2


def test_a_phone_and_a_laptop_become_one_buyer_and_attribution_conserves_revenue() -> None:
    stage = PeopleStage(Settings())
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    phone = dataclasses.replace(
        EXAMPLE_ROW, message_id="m-phone", source="f:1", type="identify", event="",
        anonymous_id="phone", user_id="ann", person_id="ann", order_id="",
        revenue=None, session_id="s1", channel="email", campaign="bf", event_at=at,
        traits='{"email": "h1:ann"}',
    )  # fmt: skip
    laptop_visit = dataclasses.replace(
        EXAMPLE_ROW, message_id="m-visit", source="f:2", type="page", event="",
        anonymous_id="laptop", person_id="laptop", order_id="", revenue=None,
        session_id="s2", channel="paid_search", campaign="", event_at=at + timedelta(days=1),
    )  # fmt: skip
    laptop_order = dataclasses.replace(
        laptop_visit, message_id="m-order", source="f:3", type="track", event="Order Completed", order_id="o1",
        revenue=99.99,
        event_at=at + timedelta(days=1, minutes=5), properties='{"email": "h1:ann"}',
    )  # fmt: skip
    update = run(stage, [phone, laptop_visit, laptop_order])
    assert stage.identity.person_of("laptop") == stage.identity.person_of("phone") == "u:ann"
    assert {link.method for link in update.links} == {"deterministic"}
    by_model: dict[str, float] = {}
    for credit in update.credits:
        assert credit.person_id == "u:ann"
        by_model[credit.model] = round(by_model.get(credit.model, 0.0) + credit.credit, 2)
    assert set(by_model.values()) == {99.99}  # every model hands out exactly the revenue
    channels = {c.channel for c in update.credits if c.model == "linear"}
    assert channels == {"email", "paid_search"}  # the phone's email visit counts for the laptop's order
    assert [v.person_id for v in update.values] == ["u:ann"]


def test_a_merge_after_orders_moves_the_value_to_the_merged_person() -> None:
    """The laptop buys as an anonymous person, ann buys on her phone; then she logs in on the laptop."""
    stage = PeopleStage(Settings())
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    order = dataclasses.replace(EXAMPLE_ROW, type="track", event="Order Completed", user_id="", traits="")
    laptop_order = dataclasses.replace(
        order, message_id="l1", source="f:1", anonymous_id="laptop", person_id="laptop", order_id="o-laptop",
        revenue=30.0, session_id="s1", event_at=at,
    )  # fmt: skip
    phone_order = dataclasses.replace(
        order, message_id="p1", source="f:2", anonymous_id="phone", user_id="ann", person_id="ann",
        order_id="o-phone", revenue=50.0, session_id="s2", event_at=at + timedelta(days=2),
    )  # fmt: skip
    login = dataclasses.replace(
        EXAMPLE_ROW, message_id="l2", source="f:3", type="identify", event="", anonymous_id="laptop",
        user_id="ann", person_id="ann", order_id="", revenue=None, session_id="s3", traits="",
        event_at=at + timedelta(days=3),
    )  # fmt: skip
    run(stage, [laptop_order, phone_order])
    assert stage.value_model.predict_one({"person_id": "a:laptop"}).frequency == 1
    update = stage.process(login)
    assert stage.identity.person_of("laptop") == "u:ann"
    assert [(v.person_id, v.frequency, v.monetary) for v in update.values] == [("u:ann", 2, 40.0)]
    assert stage.value_model.predict_one({"person_id": "a:laptop"}).frequency == 0
    assert {v.person_id for v in stage.value_model.values()} == {"u:ann"}


def test_forget_removes_the_person_everywhere() -> None:
    stage = PeopleStage(Settings())
    run(stage, orders(14))
    stage.forget(["d3"], at=datetime.now(UTC))
    assert stage.value_model.predict_one({"person_id": "a:d3"}).frequency == 0
    assert "a:d3" not in stage.paths
    assert stage.value_model.predict_one({"person_id": "a:d4"}).frequency == 2


def test_the_people_process_computes_the_stage_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """The worker's child process (a real one): a batch's effects are the stage's own, its checkpoint restores
    what the stage learned, and the effects come back to redo until the checkpoint is marked done."""
    path, rows = tmp_path / "people.pickle", orders(30)
    erase = EraseMarker(key="", ids=["d3"], subjects=[]).to_json()

    async def first_run() -> tuple[list[Effect], bytes]:
        people = await PeopleProcess.start(Settings(), path)
        try:
            assert (people.offset, people.redo) == (-1, [])
            return await people.batch([r.to_json() for r in rows] + [erase], last=30, token="people:0:0-30")
        finally:
            people.close()

    effects, state = asyncio.run(first_run())
    here = PeopleStage(Settings())
    want = run(here, rows)
    here.forget(["d3"], at=datetime.now(UTC))
    assert {e.table: len(e.rows) for e in effects} == {t: len(r) for t, r in want.tables().items() if r}
    credits = next(e for e in effects if e.table == "attribution_credits")
    assert credits.rows == want.credits
    assert credits.token == "people:0:0-30:attribution_credits"
    Checkpoint[object](path).write(state)

    async def restart() -> PeopleProcess:
        people = await PeopleProcess.start(Settings(), path)
        people.close()
        return people

    again = asyncio.run(restart())
    assert (again.offset, [e.token for e in again.redo]) == (30, [e.token for e in effects])
    restored = Checkpoint[PeopleStage](path).load()
    assert restored is not None
    for person in ("a:d0", "a:d3", "a:d6"):  # learned, and d3 forgotten, in the child
        assert restored.state.value_model.predict_one({"person_id": person}) == here.value_model.predict_one(
            {"person_id": person}
        )
    assert restored.state.identity.assignment() == here.identity.assignment()
    Checkpoint[object](path).done(30)
    assert asyncio.run(restart()).redo == []
    assert asyncio.run(restart()).offset == 30


def test_a_failure_in_the_people_process_reaches_the_worker_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        people = await PeopleProcess.start(Settings(), tmp_path / "people.pickle")
        try:
            await people.batch([b"{not a row"], last=0, token="t")
        finally:
            people.close()

    with pytest.raises(PeopleProcessError, match="JSONDecodeError: unexpected character"):
        asyncio.run(scenario())


def test_marketing_denied_people_get_no_alerts() -> None:
    allowed, denied = PeopleStage(Settings()), PeopleStage(Settings())
    rows = [  # enough customers (100) for the detector's top share to mean something
        dataclasses.replace(
            EXAMPLE_ROW, message_id=f"m{i}", source=f"f:{i}", order_id=f"o{i}", anonymous_id=f"d{i % 100}",
            person_id=f"d{i % 100}",
            session_id=f"s{i}", revenue=20.0 + (i % 100) * 3, event_at=EXAMPLE_ROW.event_at + timedelta(hours=5 * i),
        )
        for i in range(600)
    ]  # fmt: skip
    alerts = run(allowed, rows).alerts
    refused = run(denied, [dataclasses.replace(r, consent={"analytics": True, "marketing": False}) for r in rows])
    assert alerts  # the control: the same orders raise high-value alerts when marketing is allowed
    assert refused.alerts == []
    assert len(refused.values) == len(run(PeopleStage(Settings()), rows).values)  # value itself is analytics


def test_identity_thresholds_come_from_settings() -> None:
    assert PeopleStage(Settings(identity_device_threshold=0.9)).identity.device_threshold == 0.9
    off = PeopleStage(Settings(identity_probabilistic=False)).identity
    assert off.device_threshold == off.trait_threshold == float("inf")


def _current(stage: PeopleStage, rows: list[EventRow]) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """What the ``persons`` view shows after ``rows`` (per id, the person of its record with the highest
    seq; an id shown as its own node is left out, the same as never linked), and every (id, person) that
    any record named on the way."""
    latest: dict[str, tuple[int, str]] = {}
    history: set[tuple[str, str]] = set()
    for row in rows:
        update = stage.process(row)
        named = [(i, link.seq, link.person_id) for link in update.links
                 for i in (link.anonymous_id, link.other_anonymous_id, link.user_id) if i]  # fmt: skip
        named += [(i, c.seq, c.new_person_id) for c in update.changes for i in (*c.anonymous_ids, *c.user_ids)]
        for i, seq, person in named:
            latest[i] = max(latest.get(i, (0, "")), (seq, person))
            history.add((i, person))
    view = {i: person for i, (_, person) in latest.items() if person not in {f"a:{i}", f"u:{i}"}}
    return view, history


def test_the_persons_do_not_depend_on_how_partitions_interleave() -> None:
    """Two workers interleave the device partitions differently from one: a device pair can be linked and
    split again in one order and never linked in another. The assignment and the current view agree."""
    from benchmarks.scoring import rows_of

    rows, _ = rows_of(400, 10, 12)
    partitions: list[list[EventRow]] = [[], [], [], []]
    for row in rows:
        partitions[zlib.crc32(row.device_key.encode()) % 4].append(row)

    def ahead(lead: timedelta) -> list[EventRow]:  # partitions 0 and 1 run ``lead`` ahead of 2 and 3
        tagged = [(row.event_at - (lead if p < 2 else timedelta(0)), row) for p in range(4) for row in partitions[p]]
        return [row for _, row in sorted(tagged, key=lambda t: t[0])]

    stages = [PeopleStage(Settings()) for _ in range(3)]
    runs = [_current(stage, ahead(timedelta(days=d))) for stage, d in zip(stages, (0, 2, -2), strict=True)]
    views, histories = [v for v, _ in runs], [h for _, h in runs]
    assignments = [stage.identity.assignment() for stage in stages]
    assert any(link.method != "deterministic" for link in stages[0].identity.links())  # probabilistic ones too
    assert len({frozenset(h) for h in histories}) > 1  # the orders took different paths ...
    assert assignments[1] == assignments[2] == assignments[0]  # ... to the same persons
    assert views[1] == views[2] == views[0]
    for view, assignment in zip(views, assignments, strict=True):
        assert all(person in {assignment.get(f"a:{i}"), assignment.get(f"u:{i}")} for i, person in view.items())


def test_the_people_process_ends_when_the_worker_goes_away(tmp_path: Path) -> None:
    """A killed worker sends no goodbye: the child sees its pipe close and exits by itself."""

    async def scenario() -> PeopleProcess:
        return await PeopleProcess.start(Settings(), tmp_path / "people.pickle")

    people = asyncio.run(scenario())
    people._conn.close()  # what a SIGKILL of the worker leaves
    people._process.join(30)
    assert people._process.exitcode == 0


def test_a_killed_people_process_fails_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    """The child killed (say by the OOM killer): the worker's next batch fails at once, saying so."""

    async def scenario() -> None:
        people = await PeopleProcess.start(Settings(), tmp_path / "people.pickle")
        try:
            people._process.kill()
            people._process.join(30)
            await people.batch([orders(1)[0].to_json()], last=0, token="t")
        finally:
            people.close()

    with pytest.raises(PeopleProcessError, match=r"the person-level process exited \(code -9\)"):
        asyncio.run(scenario())
