import logging
import os
import shutil
import wave

import pytest

from kiosk.display import audio as audio_module
from kiosk.display.audio import Audio, synthesise_prompts
from kiosk.flow import Screen


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
    written = synthesise_prompts(tmp_path, screens=(Screen.RATING,))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "en/rating.wav", "th/rating.wav"]
    for path in written:
        with wave.open(str(path)) as wav:
            assert wav.getnframes() > wav.getframerate() * 0.3  # real speech, not a stub
    assert synthesise_prompts(tmp_path, screens=(Screen.RATING,)) == []
    monkeypatch.setitem(audio_module.wording.TITLES[Screen.RATING], "en", ("Rate us", ""))
    rewritten = synthesise_prompts(tmp_path, screens=(Screen.RATING,))
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
    written = synthesise_prompts(tmp_path / "cache", screens=(Screen.RATING,))
    assert [p.relative_to(tmp_path / "cache").as_posix() for p in written] == ["en/rating.wav"]
    assert "no spoken prompt for rating (th)" in caplog.text
