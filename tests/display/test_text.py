import dataclasses
import itertools
import pathlib
import tomllib

import pygame
import pytest

from kiosk.display import layout, theme, wording
from kiosk.display.screens import Renderer, View
from kiosk.display.screenshot import SIZES
from kiosk.display.settings import ServiceInfo
from kiosk.display.text import VOCABULARY, Fonts, graphemes, layout_block, line_break_segments, wrap
from kiosk.flow import Screen
from tests.display.harfbuzz_reference import ink_mask, iou

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARD_WORDS = ["น้ำ", "ที่", "ผู้ใหญ่", "ปั้น", "ฟ้า"]
LONG_THAI = ("การขอเปลี่ยนแปลงรายการในทะเบียนบ้านและการแจ้งย้ายที่อยู่ปลายทางพร้อมการรับรอง"
             "สำเนาเอกสารสำหรับผู้สูงอายุและผู้พิการที่ไม่สามารถเดินทางมาด้วยตนเองได้")


@pytest.fixture(scope="module")
def fonts():
    pygame.font.init()
    return Fonts()


@pytest.mark.parametrize("word", HARD_WORDS)
def test_text_thai_shaping_matches_harfbuzz_reference(fonts, word):
    font = fonts.get("ui", 64, "Thai")
    rendered = font.render(word, True, theme.INK)
    ink = pygame.mask.from_surface(rendered, 127)
    args = (theme.font_path("ui"), word)
    size, baseline = rendered.get_size(), font.get_ascent()
    shaped = ink_mask(*args, "Thai", 64, size, baseline)
    unshaped = ink_mask(*args, "Latn", 64, size, baseline)
    assert iou(ink, shaped) >= 0.75
    if iou(shaped, unshaped) < 0.95:
        # Where shaping must move marks, the kiosk's ink follows the shaped reference...
        assert iou(ink, shaped) > iou(ink, unshaped) + 0.05
        # ...and a font without the Thai script set would have drawn something else.
        wrong = fonts.get("ui", 64, "Latn").render(word, True, theme.INK)
        assert pygame.image.tobytes(wrong, "RGBA") != pygame.image.tobytes(rendered, "RGBA")


def test_text_icu_breaks_thai_between_words_only():
    segments = line_break_segments("วันนี้คุณมารับบริการใด")
    assert "".join(segments) == "วันนี้คุณมารับบริการใด"
    assert len(segments) >= 4
    # No segment starts with a combining mark or a following vowel: words stay whole.
    assert not any(s[0] in "\u0e31\u0e34\u0e35\u0e36\u0e37\u0e38\u0e39\u0e47\u0e48\u0e49\u0e4a"
                   "\u0e4b\u0e4c\u0e33\u0e32\u0e30" for s in segments)


def test_text_wrap_keeps_thai_words_whole_within_width(fonts):
    font = fonts.get("ui", 28, "Thai")
    lines = wrap(font, LONG_THAI, 300)
    assert len(lines) > 3
    assert all(font.size(line)[0] <= 300 for line in lines)
    boundaries = {0}
    position = 0
    for segment in line_break_segments(LONG_THAI):
        position += len(segment)
        boundaries.add(position)
    position = 0
    for line in lines[:-1]:
        position += len(line)
        assert position in boundaries, f"line {line!r} ends inside a word"


def test_text_a_word_wider_than_the_box_splits_between_graphemes(fonts):
    font = fonts.get("ui", 28, "Thai")
    lines = wrap(font, "ผู้ใหญ่ผู้ใหญ่ผู้ใหญ่", 60)
    assert all(font.size(line)[0] <= 60 for line in lines)
    assert "".join(lines) == "ผู้ใหญ่ผู้ใหญ่ผู้ใหญ่"
    # Re-segmenting the lines gives the same clusters: none was cut between lines.
    assert [c for line in lines for c in graphemes(line)] == graphemes("ผู้ใหญ่ผู้ใหญ่ผู้ใหญ่")


def test_text_block_shrinks_then_ellipsizes_but_never_leaves_its_box(fonts):
    box = pygame.Rect(10, 10, 200, 60)
    block = layout_block(fonts, "ui", LONG_THAI, box, max_px=28)
    assert box.contains(block.rect)
    assert block.size < 28
    assert block.surfaces


@pytest.mark.parametrize("size", [(800, 480), (480, 800)])
def test_text_very_long_thai_service_name_stays_inside_its_button(display_settings, size):
    services = (ServiceInfo("long", LONG_THAI, "A very long service name " * 6),
                *display_settings.services[:2])
    renderer = Renderer(dataclasses.replace(display_settings, services=services), size)
    for language in ("th", "en"):
        scene = renderer.scene(View(Screen.CHOOSE_SERVICE, language))
        button = next(b for b in scene.buttons if getattr(b.action, "service_id", "") == "long")
        inside = [t.ink for t in scene.texts if button.rect.contains(t.box)]
        assert len(inside) == 1
        assert all(button.rect.contains(ink) for ink in inside)


def _strings(table):
    """Every string in a wording table, however deeply nested."""
    if isinstance(table, str):
        yield table
    elif isinstance(table, dict):
        for value in table.values():
            yield from _strings(value)
    elif isinstance(table, (tuple, list)):
        for value in table:
            yield from _strings(value)


def _kiosk_strings():
    """Every string the kiosk can show or say: each wording table, and the office and service
    names of the example and demo configs (what a new office copies)."""
    strings = {s for name in dir(wording) if name.isupper()
               for s in _strings(getattr(wording, name))}
    for path in (ROOT / "docs" / "kiosk.example.toml", ROOT / "kiosk" / "demo.toml"):
        strings.update(_names(tomllib.loads(path.read_text(encoding="utf-8"))))
    return strings


def _names(config):
    if isinstance(config, dict):
        for key, value in config.items():
            if key.startswith("name_") and isinstance(value, str):
                yield value
            else:
                yield from _names(value)
    elif isinstance(config, list):
        for value in config:
            yield from _names(value)


@pytest.mark.parametrize("text,word", [
    ("ของหน่วยงานนี้", "หน่วยงาน"), ("ทำบัตรประจำตัวประชาชน", "ประจำตัว"),
    ("ไม่เก็บชื่อหรือเลขบัตร", "เลขบัตร"), ("ภาษีที่ดินและสิ่งปลูกสร้าง", "สิ่งปลูกสร้าง"),
    ("ขั้นตอนไม่ชัดเจน", "ขั้นตอน"), ("แจ้งย้ายที่อยู่", "ที่อยู่"),
])
def test_text_compounds_icu_splits_in_kiosk_strings_stay_whole(text, word):
    assert word in line_break_segments(text)


def test_text_no_kiosk_string_has_a_break_inside_a_listed_word():
    for text in _kiosk_strings():
        for word in VOCABULARY:
            if word in text:
                assert any(word in segment for segment in line_break_segments(text)), (text, word)


def test_text_icu_alone_splits_the_programme_words_the_vocabulary_keeps():
    # The reason for VOCABULARY: ICU's dictionary cuts เจ้าหน้าที่ into เจ้า|หน้าที่.
    assert "เจ้าหน้าที่" in line_break_segments("การบริการของเจ้าหน้าที่")
    assert not any(s.startswith("หน้าที่") for s in line_break_segments("ของเจ้าหน้าที่"))


@pytest.mark.parametrize("width,height,diagonal", SIZES)
def test_text_no_listed_word_is_split_at_any_layout(fonts, width, height, diagonal):
    metrics = theme.Metrics(width, height, diagonal)
    strings = _kiosk_strings()
    content = layout.below(metrics, 0).width
    widths = {content, content // 2, content // 3, content // 5, metrics.target}
    smallest = fonts.get("ui_bold", metrics.min_text_px, "Thai")
    for size in ("title", "small"):
        for text, width in itertools.product(sorted(strings), sorted(widths)):
            # As the screens draw it: wrapped, shrunk (not below 4 mm) until words fit.
            lines = layout_block(fonts, "ui_bold", text, pygame.Rect(0, 0, width, 10_000),
                                 max_px=metrics.font_px(size), min_px=metrics.min_text_px).lines
            assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
            listed = [word for word in VOCABULARY if word in text]
            # (A word wider than the box even at 4 mm cannot stay whole; no screen asks that.)
            if any(smallest.size(word)[0] > width for word in listed):
                continue
            for word, (n, line) in itertools.product(listed, enumerate(lines[:-1])):
                assert not any(line.endswith(word[:i]) and lines[n + 1].startswith(word[i:])
                               for i in range(1, len(word))), (text, width, lines)
