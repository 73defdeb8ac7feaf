"""The outbox's state machine, in one pure module: the store persists it, the pump drives it."""

import math
import re
from pathlib import Path

from kiosk import outbox_rules as rules
from kiosk.outbox_rules import ACCEPT, CONFIRM, REFUSE, REPLAY, SEND, ResendSchedule, State

KIOSK = Path(rules.__file__).parent


def test_outbox_rules_which_state_may_follow_which():
    moves = {move: (set(move.sources), move.target)
             for move in (SEND, ACCEPT, REFUSE, CONFIRM, REPLAY)}
    live = {State.PENDING, State.PUBLISHED}
    assert moves == {
        SEND: (live, None),  # an attempt is counted; the state stays
        ACCEPT: (live, State.PUBLISHED),
        REFUSE: (live, State.DEAD),
        CONFIRM: (live | {State.DEAD}, State.CONFIRMED),
        REPLAY: ({State.DEAD}, State.PENDING),
    }
    assert set(rules.LIVE) == live


def test_outbox_rules_a_reason_code_from_0x80_is_a_refusal():
    assert [rules.is_refusal(code) for code in (0x00, 0x10, 0x7F, 0x80, 0x87)] == [
        False, False, False, True, True]


def test_outbox_rules_after_a_restart_every_published_row_is_due_at_once():
    schedule = ResendSchedule(60, ["a", "b", "c"])
    assert schedule.overdue(now=0.0, limit=2) == ["a", "b"]
    assert schedule.overdue(now=0.0, limit=10, skip={"b"}) == ["a", "c"]


def test_outbox_rules_a_row_is_due_resend_after_s_after_its_last_puback():
    schedule = ResendSchedule(60, [])
    schedule.accepted(["a", "b"], now=100.0)
    schedule.accepted(["c"], now=130.0)
    assert schedule.overdue(now=159.0, limit=10) == []
    assert schedule.overdue(now=161.0, limit=10) == ["a", "b"]
    schedule.accepted(["a"], now=161.0)  # resent and PUBACKed again: last in line
    schedule.settled(["b", "unknown"])  # confirmed, dead, or no longer published
    assert schedule.overdue(now=195.0, limit=10) == ["c"]
    assert schedule.overdue(now=math.inf, limit=10) == ["c", "a"]


def test_outbox_rules_no_other_module_spells_an_outbox_state():
    """The store's frozen v1 SQL aside, the states are named only here."""
    spelled = re.compile(r"""["'](pending|published|confirmed|dead)["']""")
    found = sorted(
        f"{path.relative_to(KIOSK)}:{number}"
        for path in KIOSK.rglob("*.py") if path.name != "outbox_rules.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if spelled.search(line) and "CHECK (state IN" not in line)
    assert found == []
