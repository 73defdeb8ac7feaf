"""The soak's schedule and reckoning (issue 15), without running a soak: each check a full run
relies on must be able to fail."""

from benchmarks.soak import schedule
from benchmarks.soak.reconcile import (
    Committed,
    epoch,
    reckon,
    thank_you_window,
    unaccounted_thanks,
)

P0, P1 = "2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"


def visit(event_id, period=P0, outcome="completed"):
    return Committed(event_id, period, 5, outcome)


def thanks_at(period, second=2.0):
    """The window of a thank-you seen ``second`` s into ``period``, as KioskUnit makes it."""
    at = epoch(period) + second
    return (at - 90.0, at + 2.0)


def test_a_clean_run_reckons_clean():
    committed = {"k1": [visit("a"), visit("b", P1)]}
    collected = [("k1", "a", "i1", P0), ("k1", "b", "i1", P1)]
    counts = {("k1", "i1", P0): 1, ("k1", "i1", P1): 1}
    reckoning = reckon({"k1": [thanks_at(P0), thanks_at(P1)]}, committed, collected, counts)
    assert reckoning.clean
    assert (reckoning.thanked, reckoning.committed, reckoning.collected) == (2, 2, 2)


def test_a_committed_visit_missing_at_the_collector_is_lost_and_its_period_count_disagrees():
    committed = {"k1": [visit("a"), visit("b")]}
    reckoning = reckon({"k1": [thanks_at(P0)] * 2}, committed, [("k1", "a", "i1", P0)],
                       {("k1", "i1", P0): 2})
    assert (reckoning.lost, reckoning.count_gaps, reckoning.clean) == (1, 1, False)


def test_stored_visits_whose_period_count_never_came_are_a_gap():
    committed = {"k1": [visit("a")]}
    assert reckon({}, committed, [("k1", "a", "i1", P0)], {}).count_gaps == 1
    # An undated visit (clock never synced) has no count to wait for.
    undated = {"k1": [visit("u", period=None)]}
    assert reckon({}, undated, [("k1", "u", "i1", None)], {}).count_gaps == 0


def test_a_visit_stored_twice_or_never_committed_is_duplicated():
    committed = {"k1": [visit("a")]}
    twice = [("k1", "a", "i1", P0), ("k1", "a", "i1", P0)]
    assert reckon({}, committed, twice, {}).duplicated == 1
    phantom = [("k1", "a", "i1", P0), ("k1", "z", "i1", P0)]
    assert reckon({}, committed, phantom, {}).duplicated == 1


def test_a_thank_you_no_committed_visit_accounts_for_is_uncommitted():
    # Two thank-yous, one completed visit: a power cut took a visit the citizen was thanked for.
    committed = {"k1": [visit("a"), visit("b", outcome="abandoned")]}
    reckoning = reckon({"k1": [thanks_at(P0), thanks_at(P0, 4)]}, committed,
                       [("k1", "a", "i1", P0), ("k1", "b", "i1", P0)], {("k1", "i1", P0): 2})
    assert (reckoning.uncommitted, reckoning.clean) == (1, False)


def test_a_visit_committed_and_killed_before_its_thank_you_is_no_fault():
    committed = {"k1": [visit("a"), visit("b")]}
    assert unaccounted_thanks([thanks_at(P0)], committed["k1"]) == 0


def test_thank_yous_match_the_period_they_can_belong_to_not_just_any_visit():
    # A visit of an hour later cannot account for a thank-you seen now.
    later = "2026-12-01T11:00:00Z"
    assert unaccounted_thanks([thanks_at(P0)], [visit("a", later)]) == 1
    # Tightest first: the early thank-you takes the early visit, the later one the later.
    assert unaccounted_thanks([thanks_at(P1, 1), thanks_at(P0, 1)],
                              [visit("b", P1), visit("a", P0)]) == 0


def test_the_schedule_is_seeded_and_holds_every_kind_as_often_as_asked():
    kiosks, lanes = ["k1", "k2"], ["lane-0", "lane-1"]
    faults = schedule.plan(7, each=3, duration_s=100, kiosks=kiosks, lanes=lanes)
    assert faults == schedule.plan(7, each=3, duration_s=100, kiosks=kiosks, lanes=lanes)
    assert faults != schedule.plan(8, each=3, duration_s=100, kiosks=kiosks, lanes=lanes)
    assert len(schedule.KINDS) == 18
    assert sorted(f.kind for f in faults) == sorted(schedule.KINDS * 3)
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    assert all(0 <= f.at_s <= 100 for f in faults)
    assert all((f.target in kiosks) == (f.kind in schedule.KIOSK_KINDS) for f in faults)


def test_the_thank_you_window_follows_the_kiosk_clock_and_how_far_ahead_it_ever_was():
    now = epoch(P0)
    assert thank_you_window(now, {0.0}) == (now - 90, now + 2)
    # Stepped 3 h back: the kiosk reads its clock 3 h behind, but files visits in the first
    # period it has not closed, which may be the real one.
    assert thank_you_window(now, {-10800.0}) == (now - 10800 - 90, now + 2)
    # Just stepped, maybe not yet read: either offset.
    assert thank_you_window(now, {0.0, 10800.0}) == (now - 90, now + 10800 + 2)
    # Back at 0 after 3 h ahead: periods up to 3 h ahead until the wall clock caught up ...
    window = thank_you_window(now, {0.0}, ahead_s=10800.0)
    assert window == (now - 90, now + 10800 + 2)
    ahead = epoch("2026-12-01T12:59:55Z")
    assert unaccounted_thanks([window], [visit("a", "2026-12-01T12:59:55Z")]) == 0
    # ... and never further.
    assert unaccounted_thanks([window], [visit("a", "2026-12-01T13:00:05Z")]) == 1
    assert ahead - now < 10800
