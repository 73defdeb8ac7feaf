"""RepeatKeys: same card recognised within the window, across one rotation, forgotten after two.

SeenCards: the hashes of rated visits and their services, remembered for one window of the
monotonic clock.
"""

import pickle
import threading

import pytest

from kiosk.card.repeat import RepeatKeys, SeenCards, seeded_keys

CID = "1101700203451"
OTHER_CID = "3100600123457"
WINDOW = 1800.0


class FakeClock:
    """A monotonic clock the test drives by hand."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def recognised(keys, stored_hash, cid):
    return stored_hash in keys.candidates(cid)


def test_repeat_same_card_same_hash_within_window():
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    first = keys.hash(CID)
    clock.advance(WINDOW / 2)
    assert keys.hash(CID) == first
    assert recognised(keys, first, CID)


def test_repeat_other_card_not_recognised():
    keys = RepeatKeys(WINDOW, clock=FakeClock())
    assert not recognised(keys, keys.hash(CID), OTHER_CID)


def test_repeat_hash_is_hmac_sha256_sized_and_not_the_plain_digest():
    import hashlib

    digest = RepeatKeys(WINDOW, clock=FakeClock()).hash(CID)
    assert len(digest) == 32
    assert digest != hashlib.sha256(CID.encode()).digest()


def test_repeat_seen_just_before_rotation_still_recognised_after():
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    clock.advance(WINDOW - 1)
    stored = keys.hash(CID)
    clock.advance(2)  # crosses the rotation; hash() rotates lazily
    assert keys.hash(CID) != stored
    assert recognised(keys, stored, CID)


def test_repeat_rotation_reported_once_per_window():
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    assert keys.rotate_if_due() is False
    clock.advance(WINDOW)
    assert keys.rotate_if_due() is True
    assert keys.rotate_if_due() is False


def test_repeat_forgotten_after_two_windows():
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    stored = keys.hash(CID)
    clock.advance(WINDOW)
    assert recognised(keys, stored, CID)  # previous key, one window later
    clock.advance(WINDOW)
    assert not recognised(keys, stored, CID)
    assert len(keys.candidates(CID)) == 2


def test_repeat_idle_gap_of_two_windows_drops_both_keys():
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    stored = keys.hash(CID)
    clock.advance(2 * WINDOW + 5)
    assert keys.candidates(CID) == (keys.hash(CID),)
    assert not recognised(keys, stored, CID)


def test_repeat_new_instance_forgets_everything():
    clock = FakeClock()
    stored = RepeatKeys(WINDOW, clock=clock).hash(CID)
    assert not recognised(RepeatKeys(WINDOW, clock=clock), stored, CID)


def test_repeat_key_never_in_repr_or_pickle():
    keys = RepeatKeys(WINDOW, clock=FakeClock())
    for key in (keys._current,):
        assert key.hex() not in repr(keys)
        assert repr(key) not in repr(keys)
    assert repr(keys) == "<RepeatKeys window_s=1800>"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)


@pytest.mark.parametrize("bad", ["", "   ", "๑๒๓", 1101700203451, None])
def test_repeat_rejects_bad_cid_without_echoing_it(bad):
    keys = RepeatKeys(WINDOW, clock=FakeClock())
    with pytest.raises(ValueError) as caught:
        keys.hash(bad)
    if bad:
        assert str(bad) not in str(caught.value)


@pytest.mark.parametrize("window", [0, -5])
def test_repeat_rejects_non_positive_window(window):
    with pytest.raises(ValueError, match="repeat window"):
        RepeatKeys(window)


def test_repeat_threads_hash_while_main_rotates():
    """A hash made by the card thread stays recognised for a full window while main rotates."""
    clock = FakeClock()
    keys = RepeatKeys(WINDOW, clock=clock)
    clock_gate = threading.Lock()  # the clock only moves between a worker's two calls
    stop = threading.Event()
    errors = []

    def hasher():
        stored, stored_at = None, None
        while not stop.is_set():
            with clock_gate:
                if stored is not None and clock.now - stored_at < WINDOW:
                    if stored not in keys.candidates(CID):
                        errors.append(f"lost a hash {clock.now - stored_at:g} s after it was made")
                stored, stored_at = keys.hash(CID), clock.now

    workers = [threading.Thread(target=hasher) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3000):
            with clock_gate:
                clock.advance(WINDOW / 7)
            keys.rotate_if_due()
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert not errors
    assert not any(worker.is_alive() for worker in workers)


def test_repeat_seen_cards_within_the_window_only():
    clock = FakeClock()
    seen = SeenCards(600, clock=clock)
    seen.note(b"\x03" * 32, "id-card")
    clock.advance(599)
    assert seen.is_repeat((b"\x09" * 32, b"\x03" * 32), "id-card")
    assert not seen.is_repeat((b"\x09" * 32,), "id-card")
    assert not seen.is_repeat((), "id-card")
    clock.advance(2)
    assert not seen.is_repeat((b"\x03" * 32,), "id-card")
    assert len(seen) == 0, "an expired hash is dropped, not just ignored"


def test_repeat_seen_cards_one_rating_per_service():
    """A citizen who used a second service may rate it within the window."""
    seen = SeenCards(600, clock=FakeClock())
    seen.note(b"\x03" * 32, "id-card")
    assert seen.is_repeat((b"\x03" * 32,), "id-card")
    assert not seen.is_repeat((b"\x03" * 32,), "house-registration")
    assert not seen.is_repeat((b"\x03" * 32,), None)
    seen.note(b"\x03" * 32, "house-registration")
    assert seen.is_repeat((b"\x03" * 32,), "house-registration") and len(seen) == 2


def test_repeat_seen_cards_noted_again_restarts_its_window():
    clock = FakeClock()
    seen = SeenCards(600, clock=clock)
    seen.note(b"\x04" * 32, "a")
    clock.advance(300)
    seen.note(b"\x05" * 32, "a")
    seen.note(b"\x04" * 32, "a")
    clock.advance(400)
    assert seen.is_repeat((b"\x04" * 32,), "a") and seen.is_repeat((b"\x05" * 32,), "a")
    clock.advance(201)
    assert len(seen) == 0


def test_repeat_seen_cards_and_keys_recognise_a_card_across_a_rotation():
    """What the runner does: note the hash of a rated visit, ask with the candidates."""
    clock = FakeClock()
    keys, seen = RepeatKeys(WINDOW, clock=clock), SeenCards(WINDOW, clock=clock)
    clock.advance(WINDOW - 10)
    seen.note(keys.hash(CID), "id-card")
    clock.advance(20)
    assert seen.is_repeat(keys.candidates(CID), "id-card")
    assert not seen.is_repeat(keys.candidates(OTHER_CID), "id-card")
    assert repr(seen) == "<SeenCards 1 within 1800 s>"


def test_repeat_seeded_keys_hash_alike_and_are_predicted_across_rotations():
    """A soak's privacy scan must know every key the run drew: same seed, same keys."""
    import hashlib
    import hmac

    clock = FakeClock()
    first, second = RepeatKeys(WINDOW, clock=clock, seed="soak-1"), RepeatKeys(WINDOW, clock=clock,
                                                                               seed="soak-1")
    predicted = seeded_keys("soak-1", 3)
    hashes = []
    for _ in predicted:
        assert first.hash(CID) == second.hash(CID)
        hashes.append(first.hash(CID))
        clock.advance(WINDOW)
    assert hashes == [hmac.new(key, CID.encode(), hashlib.sha256).digest() for key in predicted]
    assert len(set(predicted)) == 3 and all(len(key) == 32 for key in predicted)
    assert seeded_keys("soak-2", 1) != seeded_keys("soak-1", 1)


def test_repeat_key_seed_cli_option_reaches_the_kiosk(make_config, tmp_path):
    """``kiosk run --repeat-key-seed`` is parsed and the assembled kiosk hashes with that seed."""
    import argparse

    from kiosk import run
    from kiosk.assemble import Kiosk

    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    assert parser.parse_args([]).repeat_key_seed is None
    seed = parser.parse_args(["--repeat-key-seed", "soak-1"]).repeat_key_seed
    cfg = make_config(tmp_path / "data", card={"backend": "none"}, kiosk={"mode": "demo"})
    with Kiosk(cfg, display=False, repeat_key_seed=seed) as kiosk:
        assert kiosk.keys.hash(CID) == RepeatKeys(WINDOW, seed="soak-1").hash(CID)


def test_repeat_key_seed_is_refused_for_a_kiosk_in_production(make_config, tmp_path):
    """A public seed would let anyone compute every card's hash: demo (test, soak) only."""
    from kiosk.assemble import Kiosk
    from kiosk.errors import KioskError

    cfg = make_config(tmp_path / "data", card={"backend": "none"})
    assert cfg.kiosk.mode == "production"
    with pytest.raises(KioskError, match="refused unless kiosk.mode"):
        Kiosk(cfg, display=False, repeat_key_seed="soak-1")
