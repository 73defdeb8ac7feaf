"""Thai text: shaped through HarfBuzz, broken into lines at real word boundaries.

pygame.font.Font with ``set_script("Thai")`` shapes Thai (tone marks over upper vowels, SARA AM)
through SDL_ttf's HarfBuzz; pygame.freetype does not shape and makes น้ำ collide, so it is never
used here. Thai is written without spaces between words, so pygame's ``wraplength`` cuts words in
half; ICU's dictionary-based line-break iterator finds the word boundaries instead, and the
programme's own vocabulary (:data:`VOCABULARY`) is kept whole on top of it: ICU's dictionary
splits compounds such as เจ้าหน้าที่ (เจ้า|หน้าที่) that a Thai reader sees as one word. Service names
come from agencies' configs, so every block is fitted: wrapped, shrunk, and as a last resort cut
with an ellipsis, so text never leaves its box.
"""

import functools
import re
from dataclasses import dataclass

import icu
import pygame

from kiosk.display import theme

_THAI = re.compile("[\u0e00-\u0e7f]")
_ELLIPSIS = "…"


def script_of(text):
    """HarfBuzz script tag for ``text``: Thai when it holds any Thai letter."""
    return "Thai" if _THAI.search(text) else "Latn"


class Fonts:
    """Font objects by (role, pixel size, script), opened once; opening a font costs ~1 ms."""

    def __init__(self):
        if not pygame.font.get_init():
            pygame.font.init()
        self._cache = {}

    def get(self, role, size, script="Thai"):
        key = (role, size, script)
        font = self._cache.get(key)
        if font is None:
            font = pygame.font.Font(theme.font_path(role), size)
            font.set_script(script)
            self._cache[key] = font
        return font

    def for_text(self, role, size, text):
        return self.get(role, size, script_of(text))


@functools.cache
def _iterator(kind, locale):
    """One ICU break iterator per kind and locale, reused (main thread only, like all drawing):
    creating one per call costs time and leaves memory behind in ICU."""
    create = {"line": icu.BreakIterator.createLineInstance,
              "character": icu.BreakIterator.createCharacterInstance}[kind]
    return create(icu.Locale(locale))


def _pieces(text, iterator):
    chars = icu.UnicodeString(text)
    iterator.setText(chars)
    start = iterator.first()
    out = []
    for end in iterator:
        # Slicing the UnicodeString keeps ICU's UTF-16 offsets right beyond the BMP.
        out.append(str(chars[start:end]))
        start = end
    return out


#: Words a line must never break inside, whatever ICU's dictionary says: the programme's terms.
VOCABULARY = (
    "เจ้าหน้าที่", "สำเนา", "ทะเบียนบ้าน", "บัตรประชาชน", "ประชาชน",
    "ความพึงพอใจ", "พึงพอใจ", "ไม่พอใจ", "ปานกลาง", "ชื่อสกุล", "เปลี่ยนชื่อ", "ให้บริการ",
    "บริการ", "ชั่วคราว", "เครื่องอ่าน", "สีทอง", "ย้อนกลับ", "แก้ไข", "คำตอบ", "อัตโนมัติ",
    "โทรศัพท์", "ออนไลน์", "ประเมิน", "เทคนิค", "ตรวจสอบ", "เอกสาร", "ไม่แน่ใจ",
    # Compounds ICU splits in the kiosk's own strings and the example and demo service names.
    "หน่วยงาน", "ประจำตัว", "เลขบัตร", "ขั้นตอน", "ตอบสนอง", "เพิ่มเติม",
    "สิ่งปลูกสร้าง", "เสร็จสิ้น", "ความเห็น", "ที่อยู่", "ช่างเทคนิค", "ภาษาไทย", "ใช้งาน", "วันนี้",
    "สักครู่",
)
_VOCABULARY = re.compile("|".join(sorted(map(re.escape, VOCABULARY), key=len, reverse=True)))


@functools.lru_cache(maxsize=2048)
def line_break_segments(text, locale="th"):
    """``text`` cut at every allowed line-break opportunity (trailing spaces stay attached), never
    inside a :data:`VOCABULARY` word and always allowed at a listed word's edges (ICU may glue
    a listed word to the next one when it splits the word wrongly: ประชา|ชนคืน)."""
    pieces = _pieces(text, _iterator("line", locale))
    if not _VOCABULARY.search(text):
        return tuple(pieces)
    breaks, position = set(), 0
    for piece in pieces:
        position += len(piece)
        breaks.add(position)
    clusters, position = set(), 0
    for cluster in graphemes(text):
        position += len(cluster)
        clusters.add(position)
    inside = set()
    for word in VOCABULARY:
        start = text.find(word)
        while start >= 0:
            inside.update(range(start + 1, start + len(word)))
            # A word's edge is a break only between whole characters, not before a space.
            breaks.update(edge for edge in (start, start + len(word))
                          if edge in clusters and not text[edge - 1:edge + 1].count(" "))
            start = text.find(word, start + 1)
    cuts = sorted(b for b in breaks - inside if 0 < b < len(text)) + [len(text)]
    out, start = [], 0
    for cut in cuts:
        out.append(text[start:cut])
        start = cut
    return tuple(out)


def graphemes(text):
    """User-perceived characters: a Thai consonant keeps its vowels and tone marks."""
    return _pieces(text, _iterator("character", "th"))


def wrap(font, text, width):
    """Lines of ``text`` no wider than ``width`` pixels, broken at Thai/English word boundaries.

    A single word wider than ``width`` is split between grapheme clusters, never inside one.
    """
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for segment in line_break_segments(paragraph):
            candidate = line + segment
            if font.size(candidate.rstrip())[0] <= width:
                line = candidate
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = ""
            for cluster in graphemes(segment):
                candidate = line + cluster
                if line and font.size(candidate.rstrip())[0] > width:
                    lines.append(line.rstrip())
                    candidate = cluster
                line = candidate
        lines.append(line.rstrip())
    return lines


def _ellipsize(font, line, width):
    clusters = graphemes(line)
    while clusters and font.size("".join(clusters).rstrip() + _ELLIPSIS)[0] > width:
        clusters.pop()
    return "".join(clusters).rstrip() + _ELLIPSIS


@dataclass(frozen=True)
class TextBox:
    """One text block: what it says, where its ink landed, the box it had to stay in, and its
    em in pixels."""

    text: str
    ink: pygame.Rect
    box: pygame.Rect
    px: int


@dataclass
class Block:
    """Rendered lines of one text box; ``rect`` is where the ink-bearing line boxes landed."""

    surfaces: list
    rect: pygame.Rect
    size: int
    #: The text of each line drawn (the line-break tests read these).
    lines: list


def layout_block(fonts, role, text, box, *, max_px, min_px=None, colour=theme.INK,
                 align="center", valign="center", max_lines=None):
    """Fit ``text`` into ``box`` (a Rect): wrap, then shrink from ``max_px`` down to ``min_px``.

    Returns a :class:`Block` whose ``rect`` lies inside ``box``. The surfaces are rendered here,
    once, so a screen's text costs nothing per frame.
    """
    min_px = min(max_px, min_px or max(14, max_px * 2 // 3))
    size = max_px
    while True:
        font = fonts.for_text(role, size, text)
        lines = wrap(font, text, box.width)
        line_h = font.get_linesize()
        fits_lines = max_lines is None or len(lines) <= max_lines
        # A word cut in two (English "Dissatisfi-ed") is a misfit too, while a smaller size helps.
        whole_words = all(font.size(segment.rstrip())[0] <= box.width
                          for segment in line_break_segments(text))
        if (fits_lines and whole_words and len(lines) * line_h <= box.height) \
                or size <= min_px:
            break
        size = max(min_px, size - 2)
    keep = max(1, min(len(lines), box.height // max(1, line_h)))
    if max_lines is not None:
        keep = min(keep, max_lines)
    if keep < len(lines):
        lines = lines[:keep - 1] + [_ellipsize(font, lines[keep - 1], box.width)]
    surfaces = [font.render(line, True, colour) for line in lines if line]
    total_h = min(box.height, len(surfaces) * line_h)
    top = {"top": box.top, "center": box.top + (box.height - total_h) // 2,
           "bottom": box.bottom - total_h}[valign]
    placed = []
    for i, surf in enumerate(surfaces):
        w = min(surf.get_width(), box.width)
        x = {"left": box.left, "center": box.left + (box.width - w) // 2,
             "right": box.right - w}[align]
        placed.append((surf, pygame.Rect(x, top + i * line_h, w, min(surf.get_height(), line_h))))
    if not placed:
        return Block([], pygame.Rect(box.center, (0, 0)), size, [])
    return Block(placed, placed[0][1].unionall([r for _, r in placed]).clip(box), size, lines)


def draw_block(surface, block):
    for surf, rect in block.surfaces:
        surface.blit(surf, rect, pygame.Rect(0, 0, rect.width, rect.height))
