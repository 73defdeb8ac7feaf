import argparse

import pygame
import pytest

from kiosk import screenshot
from kiosk.flow import LANGUAGES, Screen


def test_screenshot_verb_writes_every_screen_in_both_languages(tmp_path):
    parser = argparse.ArgumentParser()
    screenshot.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--sizes", "480x800"])
    assert screenshot.main(args) == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == sorted(f"{s.value}-{lang}-480x800.png" for s in Screen for lang in LANGUAGES)
    assert pygame.image.load(str(tmp_path / "idle-th-480x800.png")).get_size() == (480, 800)


def test_screenshot_rejects_a_malformed_size_naming_the_format():
    with pytest.raises(ValueError, match="'800by480'.*WIDTHxHEIGHT"):
        screenshot._size("800by480")
