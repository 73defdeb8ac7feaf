"""The kiosk's drawn pictures: the five rating faces, the two documents and the card slot.

Drawn, never photos of real documents. Every picture is drawn at :data:`SCALE` times its size
with plain pygame.draw shapes and smoothscaled down, which antialiases every edge at once
(pygame.draw alone leaves jagged steps). Finished pictures are cached by size, so rebuilding a
screen blits them, and the idle screen's moving card costs two blits a frame.

The faces differ in shape, not only in colour (issue 14): brows, eyes and mouth change from
face to face, so they can be told apart in greyscale, and their fills step in lightness as well
as hue, so a red-green colour-blind citizen still sees five different faces.
tests/display/test_pictures.py measures both on the rendered pixels.
"""

import functools
import math

import pygame

from kiosk import config
from kiosk.display import theme

#: Pictures are drawn this many times larger, then smoothscaled down (antialiasing).
SCALE = 4

#: Rating 1..5, red to green, each lighter or darker than its neighbour as well as another hue:
#: under a deuteranopia simulation (Machado 2009) neighbours stay CIEDE2000 10 or more apart.
FACE_COLOURS = {
    1: (214, 68, 52),
    2: (244, 140, 50),
    3: (252, 214, 74),
    4: (136, 200, 104),
    5: (44, 164, 124),
}

_TONGUE = (214, 92, 92)
_CHIP = (214, 172, 60)
_CHIP_LINES = (140, 104, 26)
_CARD_TOP = (248, 222, 232)
_CARD_BOTTOM = (206, 226, 248)
_CARD_BACK = (236, 240, 246)
_CARD_INK = (44, 70, 120)
_CARD_LINES = (120, 136, 168)
_PHOTO = (222, 230, 240)
_BOOK = (30, 76, 152)
_BOOK_SPINE = (20, 52, 110)
_PAGES = (244, 238, 220)
_GOLD = (226, 186, 84)
_GOLD_DARK = (168, 128, 40)
_KIOSK = (86, 98, 118)
_KIOSK_EDGE = (58, 68, 84)
_KIOSK_LID = (128, 140, 160)
_SLOT_GLOW = (250, 196, 60)
#: ID-1 card, 85.6 × 54 mm.
_CARD_ASPECT = 54 / 85.6


def _big(size):
    return pygame.Surface((size[0] * SCALE, size[1] * SCALE), pygame.SRCALPHA)


def _down(big, size):
    return pygame.transform.smoothscale(big, size)


def _stroke(big, colour, points, width):
    """A polyline with round joins and caps (pygame's thick lines leave notches at joins)."""
    w = max(1, round(width))
    pygame.draw.lines(big, colour, False, points, w)
    for p in points:
        pygame.draw.circle(big, colour, p, w / 2)


def _curve(x0, x1, y, bulge, steps=24):
    """Points from x0 to x1 on a parabola through y at both ends, ``bulge`` lower in the middle
    (negative: higher)."""
    return [(x0 + (x1 - x0) * i / steps, y + bulge * (1 - (2 * i / steps - 1) ** 2))
            for i in range(steps + 1)]


def _half_ellipse(half_width, y, height, steps=32):
    """An open mouth: a half ellipse on a straight edge at ``y``, ``height`` down (or up)."""
    return [(half_width * math.cos(math.pi * i / steps), y + height * math.sin(math.pi * i / steps))
            for i in range(steps + 1)]


def _rounded(big, colour, rect, radius, width=0):
    pygame.draw.rect(big, colour, pygame.Rect(rect), width=round(width),
                     border_radius=max(1, round(radius)))


def _fit(rect, aspect):
    """The largest rect of height/width ``aspect`` centred in ``rect``."""
    rect = pygame.Rect(rect)
    w = min(rect.width, round(rect.height / aspect))
    h = min(rect.height, round(w * aspect))
    out = pygame.Rect(0, 0, w, h)
    out.center = rect.center
    return out


# --- faces ------------------------------------------------------------------------------------


def face(surface, center, radius, rating, *, colour=None):
    """Draw the face for ``rating`` (1 very dissatisfied … 5 very satisfied) at ``center``.

    ``colour`` replaces the rating's fill (the tests draw every face on one neutral fill to
    compare the features alone). Returns the rect drawn, within ``radius`` of ``center``.
    """
    fill = tuple(colour or FACE_COLOURS[rating])
    picture = _face(int(radius), rating, fill)
    place = picture.get_rect(center=(center[0], center[1]))
    surface.blit(picture, place)
    return place


@functools.lru_cache(maxsize=64)
def _face(radius, rating, fill):
    """The face as a surface; its features are placed in radii from its centre, y down."""
    side = 2 * radius + 1
    big = _big((side, side))
    r = radius * SCALE
    c = side * SCALE / 2

    def at(x, y):
        return (c + x * r, c + y * r)

    pygame.draw.circle(big, theme.INK, at(0, 0), r)
    pygame.draw.circle(big, fill, at(0, 0), r - max(SCALE * 1.5, r * 0.06))
    line = r * 0.15  # bold: read from arm's length by older eyes
    for side_x in (-1, 1):
        ex = side_x * 0.34
        if rating == 5:  # closed, smiling eyes
            _stroke(big, theme.INK, [at(ex + p[0], p[1]) for p in
                                     _curve(-0.18, 0.18, -0.16, -0.16)], line)
        else:
            pygame.draw.circle(big, theme.INK, at(ex, -0.2), r * 0.13)
        # Brows: steeply sad (1), a little sad (2), none (3), raised and arched (4), none (5).
        if rating in (1, 2):
            outer_y, inner_y = (-0.24, -0.68) if rating == 1 else (-0.42, -0.56)
            _stroke(big, theme.INK, [at(side_x * 0.6, outer_y), at(side_x * 0.13, inner_y)], line)
        elif rating == 4:
            _stroke(big, theme.INK, [at(ex + p[0], p[1]) for p in
                                     _curve(-0.22, 0.22, -0.5, -0.1)], line * 0.85)
    if rating == 1:  # wide open, downturned: crying out
        pygame.draw.polygon(big, theme.INK, [at(*p) for p in _half_ellipse(0.5, 0.66, -0.44)])
    elif rating == 2:
        _stroke(big, theme.INK, [at(*p) for p in _curve(-0.46, 0.46, 0.64, -0.3)], line)
    elif rating == 3:
        _stroke(big, theme.INK, [at(-0.44, 0.4), at(0.44, 0.4)], line * 1.2)
    elif rating == 4:
        _stroke(big, theme.INK, [at(*p) for p in _curve(-0.5, 0.5, 0.18, 0.36)], line)
    else:  # a wide open grin with its tongue showing
        pygame.draw.polygon(big, theme.INK, [at(*p) for p in _half_ellipse(0.52, 0.16, 0.48)])
        pygame.draw.ellipse(big, _TONGUE, pygame.Rect(at(-0.24, 0.43), (0.48 * r, 0.22 * r)))
    return _down(big, (side, side))


# --- the two documents ------------------------------------------------------------------------


def _card_front(big, box):
    """The Thai ID card's face: title, emblem, chip, the number and name lines, the photo."""
    w, h = box.width, box.height
    unit = w / 100

    def r(x, y, rw, rh):
        return pygame.Rect(box.left + x * unit, box.top + y * unit, rw * unit, rh * unit)

    # Pale pink to pale blue, as the card's background print; masked to the rounded corners.
    paint = pygame.Surface(box.size, pygame.SRCALPHA)
    for y in range(h):
        t = y / max(1, h - 1)
        pygame.draw.line(paint, [round(a + (b - a) * t) for a, b in zip(_CARD_TOP, _CARD_BOTTOM,
                                                                       strict=True)],
                         (0, y), (w, y))
    mask = pygame.Surface(box.size, pygame.SRCALPHA)
    _rounded(mask, (255, 255, 255), mask.get_rect(), 5 * unit)
    paint.blit(mask, (0, 0), special_flags=pygame.BLEND_RGBA_MIN)
    big.blit(paint, box.topleft)
    _rounded(big, _CARD_INK, box, 5 * unit, width=1.4 * unit)
    emblem = r(10, 9, 0, 0).topleft
    pygame.draw.circle(big, _GOLD, emblem, 5.5 * unit)
    pygame.draw.circle(big, _GOLD_DARK, emblem, 5.5 * unit, width=round(1.2 * unit))
    _rounded(big, _CARD_INK, r(19, 6, 66, 4.5), 2 * unit)  # the card's title
    _rounded(big, _CARD_INK, r(28, 13, 52, 4), 2 * unit)  # the ID number
    chip = r(7, 22, 17, 13)
    _rounded(big, _CHIP, chip, 2.5 * unit)
    _rounded(big, _CHIP_LINES, chip, 2.5 * unit, width=0.8 * unit)
    pygame.draw.line(big, _CHIP_LINES, chip.midleft, chip.midright, round(0.8 * unit))
    for x in (chip.left + chip.width // 3, chip.left + 2 * chip.width // 3):
        pygame.draw.line(big, _CHIP_LINES, (x, chip.top), (x, chip.bottom), round(0.8 * unit))
    for i, length in enumerate((36, 30, 38, 24)):
        _rounded(big, _CARD_LINES, r(28, 23 + i * 8, length, 3.2), 1.6 * unit)
    photo = r(72, 22, 21, 26)
    _rounded(big, _PHOTO, photo, 1.5 * unit)
    big.set_clip(photo)  # head and shoulders, cut off at the photo's edge
    pygame.draw.circle(big, _CARD_LINES, (photo.centerx, photo.top + 9 * unit), 5 * unit)
    pygame.draw.ellipse(big, _CARD_LINES, pygame.Rect(photo.left + 3 * unit,
                                                      photo.top + 15.5 * unit,
                                                      photo.width - 6 * unit, 16 * unit))
    big.set_clip(None)
    _rounded(big, _CARD_LINES, photo, 1.5 * unit, width=0.8 * unit)


def _card_back(big, box):
    """The card's back, as a citizen holding it chip-down sees it: plain, a few lines, no chip."""
    unit = box.width / 100
    _rounded(big, _CARD_BACK, box, 5 * unit)
    _rounded(big, _CARD_INK, box, 5 * unit, width=1.4 * unit)
    for i, length in enumerate((70, 56, 62)):
        _rounded(big, _CARD_LINES, pygame.Rect(box.left + 8 * unit, box.top + (9 + i * 8) * unit,
                                               length * unit, 3.2 * unit), 1.6 * unit)
    for i in range(22):  # the laser code's bars
        x = box.left + (8 + i * 2.2) * unit
        pygame.draw.rect(big, _CARD_INK, pygame.Rect(x, box.top + 40 * unit,
                                                     (1.2 if i % 3 else 0.6) * unit, 12 * unit))


@functools.lru_cache(maxsize=16)
def _document(kind, size):
    big = _big(size)
    box = big.get_rect()
    if kind == "front":
        _card_front(big, box)
    elif kind == "back":
        _card_back(big, box)
    else:
        _book(big, box)
    return _down(big, size)


def id_card(surface, rect):
    """The Thai ID card, front up, as large as fits in ``rect``; returns the rect drawn."""
    place = _fit(rect, _CARD_ASPECT)
    surface.blit(_document("front", place.size), place)
    return place


def _book(big, box):
    unit = box.width / 100
    pages = box.inflate(-4 * unit, -4 * unit).move(2 * unit, 2 * unit)
    cover = box.inflate(-4 * unit, -4 * unit).move(-2 * unit, -2 * unit)
    _rounded(big, _PAGES, pages, 4 * unit)
    _rounded(big, _BOOK_SPINE, pages, 4 * unit, width=unit)
    _rounded(big, _BOOK, cover, 4 * unit)
    spine = pygame.Rect(cover.left, cover.top, 12 * unit, cover.height)
    _rounded(big, _BOOK_SPINE, spine, 4 * unit)
    pygame.draw.rect(big, _BOOK_SPINE, spine.inflate(-4 * unit, 0).move(2 * unit, 0))
    frame = pygame.Rect(spine.right + 5 * unit, cover.top + 6 * unit,
                        cover.right - spine.right - 10 * unit, cover.height - 12 * unit)
    _rounded(big, _GOLD, frame, 2 * unit, width=1.2 * unit)
    emblem = (frame.centerx, frame.top + frame.height * 0.3)
    pygame.draw.circle(big, _GOLD, emblem, 17 * unit)
    pygame.draw.circle(big, _GOLD_DARK, emblem, 17 * unit, width=round(2.2 * unit))
    pygame.draw.circle(big, _GOLD_DARK, emblem, 9 * unit, width=round(2.2 * unit))
    for top, width, height in ((0.62, 52, 6.5), (0.76, 36, 4.5)):  # the cover's title
        bar = pygame.Rect(0, 0, width * unit, height * unit)
        bar.center = (frame.centerx, frame.top + frame.height * top)
        _rounded(big, _GOLD, bar, height * unit / 2)


#: The house-registration book (ทะเบียนบ้าน) is a portrait booklet.
_BOOK_ASPECT = 1.4


def house_book(surface, rect):
    """The blue house-registration book, as large as fits in ``rect``; returns the rect drawn."""
    place = _fit(rect, _BOOK_ASPECT)
    surface.blit(_document("book", place.size), place)
    return place


# --- the card slot ----------------------------------------------------------------------------


#: A card lying flat on the counter, seen at an angle, looks this much shorter.
_FLAT = 0.62
#: Towards the slot, per slot: the card's direction of travel on screen.
_TOWARDS = {"below": (0, 1), "front": (0, -1), "left": (-1, 0), "right": (1, 0)}


@functools.lru_cache(maxsize=8)
def _slot_layers(size, slot, chip, taking, background):
    """The still picture (kiosk edge, slot, arrow) and the card sprite, drawn once.

    Returns (base, card, clip, rest, travel): ``clip`` is the part of the picture where the
    card shows (it vanishes into the slot beyond it), ``rest`` the card's top-left when
    furthest out, and ``travel`` how far it slides in (pixels, towards the slot).
    """
    w, h = size
    s = min(w, h)
    big = _big(size)
    big.fill(background)
    k = SCALE
    # The kiosk's edge: a band of the kiosk body along the slot's side, the slot in it.
    band = round(s * 0.2)
    length = round(s * 0.66)  # the card's long side, in final pixels
    short = round(length * _CARD_ASPECT)
    upright = slot in ("below", "front")  # the card points its chip end into the slot
    card_w, card_h = (short, length) if upright else (length, short)
    if slot == "front":
        card_h = round(card_h * _FLAT)
    if slot == "below":
        edge = pygame.Rect(0, h - band, w, band)
        mouth = pygame.Rect(0, 0, card_w + s // 8, max(6, s // 22))
        mouth.midtop = (w // 2, edge.top + band // 3)
        clip = pygame.Rect(0, 0, w, mouth.centery)
    elif slot == "front":  # a reader standing in front of the screen, the card going in away
        lid = round(s * 0.07)  # the reader's top face, seen from above
        top = (h - (lid + band + card_h)) // 2 + lid
        edge = pygame.Rect(0, top, min(w, card_w + round(s * 0.5)), band)
        edge.centerx = w // 2
        mouth = pygame.Rect(0, 0, card_w + s // 8, max(6, s // 22))
        mouth.midbottom = (w // 2, edge.bottom - band // 3)
        clip = pygame.Rect(0, mouth.centery, w, h - mouth.centery)
    elif slot == "left":
        edge = pygame.Rect(0, 0, band, h)
        mouth = pygame.Rect(0, 0, max(6, s // 22), card_h + s // 8)
        mouth.midleft = (edge.right - band // 3, h // 2)
        clip = pygame.Rect(mouth.centerx, 0, w - mouth.centerx, h)
    else:
        edge = pygame.Rect(w - band, 0, band, h)
        mouth = pygame.Rect(0, 0, max(6, s // 22), card_h + s // 8)
        mouth.midright = (edge.left + band // 3, h // 2)
        clip = pygame.Rect(0, 0, mouth.centerx, h)

    def big_rect(rect):
        return pygame.Rect(rect.x * k, rect.y * k, rect.width * k, rect.height * k)

    if slot == "front":
        body = big_rect(edge)
        lid_face = [(body.left + lid * k, body.top - lid * k),
                    (body.right - lid * k, body.top - lid * k), body.topright, body.topleft]
        pygame.draw.polygon(big, _KIOSK_LID, lid_face)
        _rounded(big, _KIOSK, body, 2 * k)
    else:
        pygame.draw.rect(big, _KIOSK, big_rect(edge))
        inner = {"below": edge.midtop, "left": edge.midright, "right": edge.midleft}[slot]
        line = pygame.Rect(0, 0, *((w, 3) if slot == "below" else (3, h)))
        line.center = inner
        pygame.draw.rect(big, _KIOSK_EDGE, big_rect(line))
    glow = big_rect(mouth.inflate(s // 10, s // 10))
    _rounded(big, _SLOT_GLOW, glow, glow.height // 2 if slot in ("below", "front")
             else glow.width // 2)
    _rounded(big, theme.INK, big_rect(mouth), min(mouth.size) * k // 2)
    travel = round(s * 0.07)
    reach = round(s * 0.03)  # how far the card's leading edge is in when furthest out
    card = pygame.Rect(0, 0, card_w, card_h)
    if upright:
        card.centerx = w // 2
        if slot == "below":
            card.bottom = mouth.centery + reach
        else:
            card.top = mouth.centery - reach
    else:
        card.centery = h // 2
        if slot == "left":
            card.left = mouth.centerx - reach
        else:
            card.right = mouth.centerx + reach
    _arrow(big, card, mouth, slot, s, taking)
    base = pygame.Surface(size)  # opaque: the cheapest blit, once a frame
    base.blit(_down(big, size), (0, 0))
    return base, _card_sprite(length, slot, chip), clip, card.topleft, travel


def _arrow(big, card, mouth, slot, s, taking):
    """A thick arrow beside ``card``'s path: its tip at the slot, or its tail when taking."""
    k = SCALE
    dx, dy = _TOWARDS[slot]
    length = s * 0.3
    margin = s * 0.07  # clear of the slot's glow
    if dy:
        x = card.right + s * 0.12
        tip_y = (mouth.top - margin) if dy > 0 else (mouth.bottom + margin)
        tail, tip = (x, tip_y - dy * length), (x, tip_y)
    else:
        y = card.bottom + s * 0.12
        tip_x = (mouth.right + margin) if dx < 0 else (mouth.left - margin)
        tail, tip = (tip_x - dx * length, y), (tip_x, y)
    if taking:
        tail, tip, dx, dy = tip, tail, -dx, -dy
    head = s * 0.09
    width = s * 0.045
    neck = (tip[0] - dx * head, tip[1] - dy * head)
    _stroke(big, theme.PRIMARY, [(tail[0] * k, tail[1] * k), (neck[0] * k, neck[1] * k)],
            width * k)
    side = (-dy, dx)  # perpendicular
    points = [(tip[0] + dx * width * 0.3, tip[1] + dy * width * 0.3),
              (neck[0] + side[0] * head * 0.9, neck[1] + side[1] * head * 0.9),
              (neck[0] - side[0] * head * 0.9, neck[1] - side[1] * head * 0.9)]
    pygame.draw.polygon(big, theme.PRIMARY, [(x * k, y * k) for x, y in points])


def _card_sprite(length, slot, chip):
    """The card turned so its chip end leads into the slot, chip side or back showing."""
    shows_chip = chip in ("up", "towards")
    card = _document("front" if shows_chip else "back", (length, round(length * _CARD_ASPECT)))
    # The chip sits at the front's left end: turn that end towards the slot. Seen from behind,
    # the chip end is the right one.
    turn = {"below": 90, "front": -90, "left": 0, "right": 180}[slot]
    card = pygame.transform.rotate(card, turn if shows_chip else (turn + 180) % 360)
    if slot == "front":
        w, h = card.get_size()
        card = pygame.transform.smoothscale(card, (w, round(h * _FLAT)))
    return card


def card_slot(surface, rect, slot, chip, phase, *, taking=False, background=theme.BACKGROUND):
    """The idle screen's picture of where the card goes on this kiosk, at ``phase`` in [0, 1).

    ``slot`` and ``chip`` are the config's display.card_slot and display.chip_facing (see
    :data:`kiosk.config.CARD_SLOTS`): the kiosk's edge with the slot on that side, and the card
    turned chip end first, its chip side showing when the chip faces up or towards the citizen.
    ``taking`` turns the arrow round, out of the slot: the same slot for "please take your card".

    The card slides a little into the slot and back once per phase cycle, gently (a cosine);
    a cycle of two to three seconds looks calm. Cheap to call every frame: the picture is drawn
    once per size, then two blits (about 0.1 ms). Draws only inside ``rect`` and returns it,
    the one dirty rect.
    """
    problem = config.card_slot_problem(slot, chip)
    if problem:
        raise ValueError(f"card slot: {problem}")
    rect = pygame.Rect(rect)
    base, sprite, clip, rest, travel = _slot_layers(rect.size, slot, chip, taking,
                                                    tuple(background))
    surface.blit(base, rect)
    dx, dy = _TOWARDS[slot]
    depth = round(travel * (0.5 - 0.5 * math.cos(2 * math.pi * phase)))
    old_clip = surface.get_clip()
    surface.set_clip(clip.move(rect.topleft).clip(old_clip))
    surface.blit(sprite, (rect.left + rest[0] + dx * depth, rect.top + rest[1] + dy * depth))
    surface.set_clip(old_clip)
    return rect
