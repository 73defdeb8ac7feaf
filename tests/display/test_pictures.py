"""The drawn pictures, measured on their rendered pixels (issue 14).

The faces must differ in shape (features alone, every fill the same) and, for a red-green
colour-blind citizen, in colour (Machado 2009 deuteranopia, CIEDE2000); every picture is
antialiased and stays inside the rect it was given.
"""

import itertools

import pygame
import pytest

from kiosk import config
from kiosk.display import pictures, theme
from kiosk.display.settings import DisplaySettings
from tests.display import colour

RATINGS = (1, 2, 3, 4, 5)
#: From a face in a small portrait column cell to one on a 10" landscape panel.
RADII = (20, 48, 100)
NEUTRAL = (255, 255, 255)
SENTINEL = (255, 0, 255)


def render_face(radius, rating, fill=None):
    side = 2 * radius + 1
    surface = pygame.Surface((side, side))
    surface.fill(theme.BACKGROUND)
    pictures.face(surface, (radius, radius), radius, rating, colour=fill)
    return surface


def pixels(surface):
    """Every pixel's (r, g, b), row by row."""
    data = pygame.image.tobytes(surface, "RGB")
    return list(zip(data[0::3], data[1::3], data[2::3], strict=True))


def face_pixels(radius, rating, fill=None):
    """The face's own pixels: those inside its circle, in a fixed order."""
    drawn, side = pixels(render_face(radius, rating, fill)), 2 * radius + 1
    return [drawn[y * side + x] for y in range(side) for x in range(side)
            if (x - radius) ** 2 + (y - radius) ** 2 <= radius ** 2]


def differ(a, b):
    """Clearly different pixels: a fifth of full scale or more apart, on average per channel."""
    return sum(abs(p - q) for p, q in zip(a, b, strict=True)) > 3 * 51


@pytest.mark.parametrize("radius", RADII)
def test_pictures_faces_differ_in_shape_with_the_colour_taken_away(radius):
    features = {r: face_pixels(radius, r, NEUTRAL) for r in RATINGS}
    for a, b in itertools.combinations(RATINGS, 2):
        changed = sum(differ(p, q) for p, q in zip(features[a], features[b], strict=True))
        share = changed / len(features[a])
        assert share >= 0.10, f"faces {a} and {b} differ in {share:.1%} of their pixels"


def mean_colour_seen_by_a_deuteranope(radius, rating):
    light = [colour.linear(p) for p in face_pixels(radius, rating)]
    mean = tuple(sum(c[i] for c in light) / len(light) for i in range(3))
    return colour.lab(colour.deuteranope(mean))


@pytest.mark.parametrize("radius", RADII)
def test_pictures_neighbouring_faces_differ_in_colour_for_a_deuteranope(radius):
    seen = {r: mean_colour_seen_by_a_deuteranope(radius, r) for r in RATINGS}
    for a, b in itertools.pairwise(RATINGS):
        delta = colour.ciede2000(seen[a], seen[b])
        assert delta >= 10, f"faces {a} and {b}: CIEDE2000 {delta:.1f} under deuteranopia"


#: Sharma, Wu & Dalal (2005), Table 1: pairs 1, 4, 7, 13, 14, 17, 19, 25, 34 (arc crossings, an
#: achromatic colour, hue means either side of 180°, dark colours).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize("lab1,lab2,expected", SHARMA)
def test_pictures_ciede2000_matches_sharmas_test_data(lab1, lab2, expected):
    assert colour.ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert colour.ciede2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)


def test_pictures_deuteranopia_keeps_white_and_confuses_red_with_green():
    white = colour.linear((255, 255, 255))
    assert colour.lab(colour.deuteranope(white)) == pytest.approx((100, 0, 0), abs=0.1)
    red, green = colour.linear((200, 60, 45)), colour.linear((110, 110, 50))
    normal = colour.ciede2000(colour.lab(red), colour.lab(green))
    simulated = colour.ciede2000(colour.lab(colour.deuteranope(red)),
                                 colour.lab(colour.deuteranope(green)))
    assert simulated < normal / 3


@pytest.mark.parametrize("rating", RATINGS)
def test_pictures_faces_are_antialiased(rating):
    radius = RADII[1]
    drawn = face_pixels(radius, rating)
    exact = {theme.BACKGROUND, theme.INK, pictures.FACE_COLOURS[rating]}
    between = sum(p not in exact for p in drawn)
    # A hard-edged face has none; a smooth one has a band of blended pixels round its rim
    # and every feature.
    assert between >= 4 * radius


def changed_area(draw, size=(400, 300)):
    """The bounding rect of the pixels ``draw(surface)`` changed on a sentinel surface."""
    surface = pygame.Surface(size)
    surface.fill(SENTINEL)
    draw(surface)
    changed = pygame.mask.from_threshold(surface, SENTINEL, (1, 1, 1, 255))
    changed.invert()
    rects = changed.get_bounding_rects()
    return rects[0].unionall(rects[1:])


@pytest.mark.parametrize("rating", RATINGS)
def test_pictures_a_face_stays_inside_its_circle(rating):
    area = changed_area(lambda s: pictures.face(s, (200, 150), 40, rating))
    assert pygame.Rect(160, 110, 81, 81).contains(area)


@pytest.mark.parametrize("draw,aspect", [(pictures.id_card, 54 / 85.6),
                                         (pictures.house_book, 1.4)])
@pytest.mark.parametrize("box", [pygame.Rect(30, 40, 300, 120), pygame.Rect(50, 10, 90, 280)])
def test_pictures_documents_fill_their_rect_and_stay_inside_it(draw, aspect, box):
    drawn = {}
    area = changed_area(lambda s: drawn.setdefault("rect", draw(s, box)))
    assert box.contains(area)
    assert drawn["rect"].center == box.center
    assert drawn["rect"].height / drawn["rect"].width == pytest.approx(aspect, abs=0.02)
    assert max(area.width / box.width, area.height / box.height) > 0.95


def test_pictures_the_house_book_is_blue_and_the_id_card_pale():
    book, card = pygame.Surface((100, 140)), pygame.Surface((171, 108))
    pictures.house_book(book, book.get_rect())
    pictures.id_card(card, card.get_rect())
    r, g, b = pygame.transform.average_color(book)[:3]
    assert b > r + 60 and b > g + 40
    assert min(pygame.transform.average_color(card)[:3]) > 150


SLOTS = [(slot, chip) for slot, chips in config.CARD_SLOTS.items() for chip in chips]


@pytest.mark.parametrize("slot,chip", SLOTS)
@pytest.mark.parametrize("phase", [0.0, 0.5])
def test_pictures_the_card_slot_draws_only_inside_its_rect(slot, chip, phase):
    box = pygame.Rect(60, 30, 260, 220)
    returned = {}
    area = changed_area(lambda s: returned.setdefault(
        "dirty", pictures.card_slot(s, box, slot, chip, phase)))
    assert box.contains(area)
    assert returned["dirty"] == box


def render_slot(slot, chip, phase=0.0, **options):
    surface = pygame.Surface((130, 110))
    pictures.card_slot(surface, surface.get_rect(), slot, chip, phase, **options)
    return pixels(surface)


def share_changed(a, b):
    return sum(differ(p, q) for p, q in zip(a, b, strict=True)) / len(a)


def test_pictures_the_card_slot_differs_per_slot_and_chip():
    drawn = {key: render_slot(*key) for key in SLOTS}
    for a, b in itertools.combinations(SLOTS, 2):
        assert share_changed(drawn[a], drawn[b]) > 0.03, f"{a} looks like {b}"


@pytest.mark.parametrize("slot,chip", SLOTS)
def test_pictures_the_card_slides_in_and_back_once_per_cycle(slot, chip):
    start, half, end = (render_slot(slot, chip, p) for p in (0.0, 0.5, 1.0))
    assert share_changed(start, half) > 0.01
    assert start == end


@pytest.mark.parametrize("slot", config.CARD_SLOTS)
def test_pictures_taking_the_card_turns_the_arrow_round(slot):
    chip = config.CARD_SLOTS[slot][0]
    going_in, taking = render_slot(slot, chip), render_slot(slot, chip, taking=True)
    assert 0.005 < share_changed(going_in, taking) < 0.1  # the arrow alone


def test_pictures_the_card_slot_refuses_a_chip_that_does_not_fit():
    surface = pygame.Surface((200, 200))
    with pytest.raises(ValueError, match="'up' does not fit card_slot 'left'; use towards or away"):
        pictures.card_slot(surface, surface.get_rect(), "left", "up", 0.0)


def test_pictures_the_display_settings_carry_the_configured_slot(make_config):
    settings = DisplaySettings.from_config(
        make_config(display={"card_slot": "front", "chip_facing": "down"}))
    assert (settings.card_slot, settings.chip_facing) == ("front", "down")
