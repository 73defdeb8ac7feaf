"""A shaping reference for the Thai tests: uharfbuzz shapes, and its outlines are rasterised.

Independent of SDL_ttf: HarfBuzz here is the Python wheel's own copy, glyph outlines are drawn
with a small even-odd scanline fill, so the kiosk's rendering is compared with what correct
shaping of the same font must look like.
"""

import pygame
import uharfbuzz as hb


class _Outline:
    """fontTools-style pen collecting flattened contours (font units, y up)."""

    def __init__(self):
        self.contours = []
        self._current = []

    def moveTo(self, p):  # noqa: N802 - the pen protocol's names
        self._current = [p]

    def lineTo(self, p):  # noqa: N802
        self._current.append(p)

    def curveTo(self, *points):  # noqa: N802
        start = self._current[-1]
        c1, c2, end = points[-3:]
        for i in range(1, 9):
            t = i / 8
            mt = 1 - t
            a, b, c, d = mt ** 3, 3 * mt * mt * t, 3 * mt * t * t, t ** 3
            self._current.append((a * start[0] + b * c1[0] + c * c2[0] + d * end[0],
                                  a * start[1] + b * c1[1] + c * c2[1] + d * end[1]))

    def qCurveTo(self, *points):  # noqa: N802
        start = self._current[-1]
        *offs, end = points
        for i, off in enumerate(offs):
            stop = end if i == len(offs) - 1 else ((off[0] + offs[i + 1][0]) / 2,
                                                   (off[1] + offs[i + 1][1]) / 2)
            for j in range(1, 7):
                t = j / 6
                mt = 1 - t
                self._current.append((mt * mt * start[0] + 2 * mt * t * off[0] + t * t * stop[0],
                                      mt * mt * start[1] + 2 * mt * t * off[1] + t * t * stop[1]))
            start = stop

    def closePath(self):  # noqa: N802
        if len(self._current) > 2:
            self.contours.append(self._current)
        self._current = []

    endPath = closePath  # noqa: N815


def shape(path, text, script):
    """[(glyph id, x, y)] in font units, and units per em."""
    face = hb.Face(hb.Blob.from_file_path(str(path)))
    font = hb.Font(face)
    buf = hb.Buffer()
    buf.add_str(text)
    buf.direction, buf.script, buf.language = "ltr", script, "th"
    hb.shape(font, buf, {})
    pen_x, placed = 0, []
    for info, pos in zip(buf.glyph_infos, buf.glyph_positions, strict=True):
        placed.append((info.codepoint, pen_x + pos.x_offset, pos.y_offset))
        pen_x += pos.x_advance
    return font, placed, face.upem


def ink_mask(path, text, script, px, size, baseline):
    """The ink of ``text`` shaped with ``script`` at ``px`` pixels per em, as a pygame Mask."""
    font, placed, upem = shape(path, text, script)
    scale = px / upem
    mask = pygame.mask.Mask(size)
    for gid, gx, gy in placed:
        outline = _Outline()
        font.draw_glyph_with_pen(gid, outline)
        for contour in outline.contours:
            points = [((gx + x) * scale, baseline - (gy + y) * scale) for x, y in contour]
            layer = pygame.Surface(size, pygame.SRCALPHA)
            pygame.draw.polygon(layer, (255, 255, 255, 255), points)
            contour_mask = pygame.mask.from_surface(layer)
            # Even-odd: a contour inside another (the hole of ำ's circle) cuts it out.
            both = mask.overlap_mask(contour_mask, (0, 0))
            mask.draw(contour_mask, (0, 0))
            mask.erase(both, (0, 0))
    return mask


def iou(a, b):
    both = a.overlap_area(b, (0, 0))
    either = a.count() + b.count() - both
    return both / either if either else 1.0
