import logging
import os
import shutil
import wave

import pytest

from kiosk.display import wording
from kiosk.display.audio import Audio, synthesise_prompts
from kiosk.flow import CARD_PROBLEMS, LANGUAGES, Screen, State


def write_wav(path, seconds=0.05):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(b"\0\0" * int(22050 * seconds))


@pytest.fixture
def dummy_sound(monkeypatch):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    made = []
    yield made
    for a in made:
        a.close()


def test_audio_without_a_sound_device_is_silently_off(monkeypatch, caplog):
    monkeypatch.setenv("SDL_AUDIODRIVER", "no-such-driver")
    with caplog.at_level(logging.INFO, logger="kiosk.display.audio"):
        sound = Audio(enabled=True, volume=0.5)
    assert not sound.is_on
    assert sound.play_prompt(Screen.IDLE, "th") is None
    sound.play("tap")
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_audio_agency_recording_wins_over_the_synthesised_prompt(tmp_path, dummy_sound):
    write_wav(tmp_path / "agency" / "th" / "rating.wav")
    write_wav(tmp_path / "cache" / "th" / "rating.wav")
    write_wav(tmp_path / "cache" / "en" / "rating.wav")
    sound = Audio(enabled=True, volume=0.5, prompts_dir=tmp_path / "agency",
                  cache_dir=tmp_path / "cache")
    dummy_sound.append(sound)
    assert sound.is_on
    assert sound.play_prompt(Screen.RATING, "th") == tmp_path / "agency" / "th" / "rating.wav"
    assert sound.play_prompt(Screen.RATING, "en") == tmp_path / "cache" / "en" / "rating.wav"
    assert sound.play_prompt(Screen.IDLE, "en") is None


def test_audio_a_broken_recording_is_skipped_with_a_warning(tmp_path, dummy_sound, caplog):
    bad = tmp_path / "agency" / "th" / "idle.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a wav")
    sound = Audio(enabled=True, volume=0.5, prompts_dir=tmp_path / "agency")
    dummy_sound.append(sound)
    with caplog.at_level(logging.WARNING):
        assert sound.play_prompt(Screen.IDLE, "th") is None
    assert str(bad) in caplog.text


def test_audio_disabled_plays_nothing(tmp_path):
    write_wav(tmp_path / "th" / "idle.wav")
    sound = Audio(enabled=False, volume=1.0, prompts_dir=tmp_path)
    assert not sound.is_on and sound.play_prompt(Screen.IDLE, "th") is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is in ./dev setup")
def test_audio_prompts_are_synthesised_once_in_thai_and_english(tmp_path, monkeypatch):
    written = synthesise_prompts(tmp_path, prompts=("rating",))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "en/rating.wav", "th/rating.wav"]
    for path in written:
        with wave.open(str(path)) as wav:
            assert wav.getnframes() > wav.getframerate() * 0.3  # real speech, not a stub
    assert synthesise_prompts(tmp_path, prompts=("rating",)) == []
    monkeypatch.setitem(wording.PROMPTS["rating"], "en", "Rate us")
    rewritten = synthesise_prompts(tmp_path, prompts=("rating",))
    assert rewritten == [tmp_path / "en" / "rating.wav"]


def test_audio_a_voice_that_fails_costs_its_prompt_not_the_start(tmp_path, monkeypatch, caplog):
    """An espeak-ng whose Thai voice is broken (exit 1) still leaves the English prompt."""
    real = shutil.which("espeak-ng")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "espeak-ng"
    fake.write_text(f'#!/bin/sh\ncase " $* " in *" -v th "*) exit 1;; esac\nexec {real} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    written = synthesise_prompts(tmp_path / "cache", prompts=("rating",))
    assert [p.relative_to(tmp_path / "cache").as_posix() for p in written] == ["en/rating.wav"]
    assert "no spoken prompt for rating (th)" in caplog.text


def test_audio_every_screen_and_card_problem_has_a_prompt_in_each_language():
    """Including the new card-return, confirm and take-card screens, and the card reminder."""
    keys = {wording.prompt_id(screen) for screen in Screen}
    keys |= {wording.prompt_id(Screen.CARD_PROBLEM, problem) for problem in CARD_PROBLEMS}
    keys.add(wording.CARD_REMINDER)
    keys.add(wording.prompt_id(Screen.TAKE_CARD, card_forgotten=True))
    for key in keys:
        for language in LANGUAGES:
            assert wording.prompt(key, language).strip(), f"{key} ({language})"
    assert set(wording.PROMPTS) == keys, "a prompt no screen says"


@pytest.mark.parametrize("key, language, words", [
    ("return_card", "th", "กรุณารับบัตรประชาชนคืน"),
    ("return_card", "en", "Please take your ID card"),
    ("card_reminder", "th", "กรุณารับบัตรประชาชนคืน"),
    ("card_problem", "th", "อ่านบัตรไม่สำเร็จ ดึงบัตรออก เช็ดชิปสีทองให้สะอาด แล้วเสียบบัตรใหม่"),
    ("card_problem", "en", "Take the card out, wipe the gold chip, insert it again"),
    ("out_of_service", "th", "เครื่องนี้งดให้บริการชั่วคราว"),
    ("confirm", "th", "แก้ไขคำตอบ"),
    ("confirm", "en", "Change my answer"),
])
def test_audio_prompts_say_the_programme_wording(key, language, words):
    assert words in wording.prompt(key, language)


def test_audio_the_card_problem_prompt_names_the_problem():
    assert wording.prompt_id(Screen.CARD_PROBLEM, "not_thai_id") == "card_problem-not_thai_id"
    assert wording.prompt_id(Screen.CARD_PROBLEM, "unreadable") == "card_problem"
    assert wording.prompt_id(Screen.RATING, "not_thai_id") == "rating"


def test_audio_prompts_with_the_same_words_share_one_synthesis(tmp_path, monkeypatch):
    """The card-return prompt and the card reminder say the same: espeak-ng runs once."""
    calls = tmp_path / "calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "espeak-ng"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nwhile [ "$1" != -w ]; do shift; done\n'
                    'printf RIFF > "$2"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    written = synthesise_prompts(tmp_path / "cache", prompts=("return_card", "card_reminder"),
                                 languages=("th",))
    assert [p.name for p in written] == ["return_card.wav", "card_reminder.wav"]
    assert len(calls.read_text().splitlines()) == 1
    assert (tmp_path / "cache" / "th" / "card_reminder.wav").read_bytes() == b"RIFF"
    assert not list((tmp_path / "cache" / "th").glob("*.part"))


def test_audio_card_reminder_waits_for_the_screen_prompt_to_finish(tmp_path, dummy_sound):
    write_wav(tmp_path / "agency" / "en" / "rating.wav", seconds=3)
    write_wav(tmp_path / "agency" / "en" / "card_reminder.wav")
    sound = Audio(enabled=True, volume=0.5, prompts_dir=tmp_path / "agency")
    dummy_sound.append(sound)
    assert sound.play_prompt(Screen.RATING, "en")
    assert not sound.remind("en"), "the question is not cut off"
    sound._channel.stop()
    assert sound.remind("en")


def test_audio_display_says_which_card_problem_and_the_reminder(tmp_path, make_display):
    agency = tmp_path / "agency"
    for name in ("card_problem", "card_problem-not_thai_id", "card_reminder"):
        write_wav(agency / "th" / f"{name}.wav")
    display, _ = make_display(audio_enabled=True, prompts_dir=agency, prompt_cache_dir=None)
    said = []
    display.audio._say = lambda key, language: said.append((str(key), language)) or key
    display.show(State(screen=Screen.CARD_PROBLEM, problem="not_thai_id", card_present=True))
    display.beep("reminder")
    assert said == [("card_problem-not_thai_id", "th"), ("card_reminder", "th")]
