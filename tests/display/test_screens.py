import dataclasses
import gc
import itertools
import weakref
from urllib.parse import parse_qs, urlsplit

import pygame
import pytest
from pyzbar import pyzbar

from kiosk import flow, visit
from kiosk.display import theme, wording
from kiosk.display.screens import OFFERED_REASONS, SCREENS, PageTurned, Renderer, View
from kiosk.display.screenshot import SIZES, sample_states
from kiosk.display.settings import ServiceInfo
from kiosk.flow import Screen, State


def test_screens_one_drawing_per_flow_screen():
    assert set(SCREENS) == set(Screen)


def _scenes(settings, width, height, diagonal, states=None):
    renderer = Renderer(dataclasses.replace(settings, diagonal_in=diagonal), (width, height))
    for (name, state), language in itertools.product(states or sample_states(), ("th", "en")):
        view = View.of(dataclasses.replace(state, language=language),
                       portal_url="https://citizeninfo.go.th/portal?sp=X&t=abc")
        yield f"{name}/{language}/{width}x{height}", renderer.metrics, renderer.scene(view)


def _with_card(states):
    """Every sample state, and again with the card still in (the reminder banner)."""
    return [*states, *((f"{name}+card", dataclasses.replace(state, card_present=True))
                       for name, state in states)]


@pytest.mark.parametrize("width,height,diagonal", SIZES)
def test_screens_every_screen_fits_every_resolution(display_settings, width, height, diagonal):
    screen_rect = pygame.Rect(0, 0, width, height)
    for where, metrics, scene in _scenes(display_settings, width, height, diagonal,
                                         _with_card(sample_states())):
        cm = metrics.px_per_cm
        assert scene.texts, where
        for text in scene.texts:
            assert text.box.contains(text.ink), f"{where}: text overflows its box"
            assert screen_rect.contains(text.box), f"{where}: text box leaves the screen"
            assert text.px / cm * 10 >= theme.MIN_TEXT_MM, f"{where}: text under 4 mm"
        # Nothing overlaps: no two buttons, no two texts, no text across a button's edge.
        for a, b in itertools.combinations(scene.buttons, 2):
            assert not a.rect.colliderect(b.rect), f"{where}: {a.label} overlaps {b.label}"
        for a, b in itertools.combinations(scene.texts, 2):
            assert not a.ink.colliderect(b.ink), f"{where}: two texts overlap"
        for text, button in itertools.product(scene.texts, scene.buttons):
            inside = button.rect.contains(text.ink)
            assert inside or not button.rect.colliderect(text.ink), \
                f"{where}: text crosses {button.label}"
        for button in scene.buttons:
            assert screen_rect.contains(button.rect), f"{where}: {button.label} off screen"
            assert min(button.rect.size) / cm >= 2.0, f"{where}: {button.label} under 2 cm"
        if scene.qr_rect:
            assert screen_rect.contains(scene.qr_rect)
            assert not any(b.rect.colliderect(scene.qr_rect) for b in scene.buttons)
            assert not any(t.ink.colliderect(scene.qr_rect) for t in scene.texts)
        # The coloured strip is one line of text, not a quarter of the screen; in portrait,
        # where Back and the language share it, it is one touch target tall.
        tall = metrics.target if metrics.is_portrait and any(
            b.kind == "nav" for b in scene.buttons) else theme.HEADER_MAX_SHARE * height
        assert scene.header.height <= tall, where


def _actions(scene):
    return [b.action for b in scene.buttons]


@pytest.mark.parametrize("language", ["th", "en"])
def test_screens_question_buttons_map_to_flow_events(display_settings, language):
    renderer = Renderer(display_settings)
    scene = lambda screen: renderer.scene(View(screen, language))  # noqa: E731
    nav = {flow.LanguageToggled(), flow.Back()}
    assert set(_actions(scene(Screen.COPY_CHECK))) == {
        *nav, *(flow.CopyAnswered(a) for a in flow.COPY_ANSWERS)}
    assert set(_actions(scene(Screen.RATING))) == {
        *nav, *(flow.RatingChosen(r) for r in flow.RATINGS)}
    assert set(_actions(scene(Screen.REASON))) == {
        *nav, flow.ReasonChosen(None), *(flow.ReasonChosen(r) for r in OFFERED_REASONS)}
    assert set(_actions(scene(Screen.CHOOSE_SERVICE))) == {
        *nav, flow.ServiceChosen(visit.OTHER_SERVICE),
        *(flow.ServiceChosen(s.id) for s in display_settings.services)}
    # The answers come first, in order; Back and the language button after them.
    assert scene(Screen.RATING).choices == [flow.RatingChosen(r) for r in flow.RATINGS]
    # The main action first: physical button 1 sends.
    assert scene(Screen.CONFIRM).choices == [flow.Dismissed(), flow.ChangeAnswer()]
    assert scene(Screen.REASON).choices == [
        *(flow.ReasonChosen(r) for r in OFFERED_REASONS), flow.ReasonChosen(None)]


def test_screens_reasons_leave_out_the_retired_and_set_skip_apart(display_settings):
    assert set(OFFERED_REASONS) == set(visit.REASONS) - set(visit.RETIRED_REASONS)
    scene = Renderer(display_settings).scene(View(Screen.REASON, "en"))
    skip = next(b for b in scene.buttons if b.action == flow.ReasonChosen(None))
    reason = next(b for b in scene.buttons if b.action == flow.ReasonChosen("staff"))
    # Skip is drawn in the outlined nav style: its fill is the page's, not a reason's white.
    inside = lambda b: scene.surface.get_at((b.rect.left + 12, b.rect.centery))[:3]  # noqa: E731
    assert inside(skip) == theme.BACKGROUND
    assert inside(reason) == theme.SURFACE
    assert skip.rect.top > reason.rect.bottom


def test_screens_service_screen_shows_no_copy_status(display_settings):
    scene = Renderer(display_settings).scene(View(Screen.CHOOSE_SERVICE, "en"))
    services = [b for b in scene.buttons if isinstance(b.action, flow.ServiceChosen)]
    # One text per button (its name): no status pill hinting at the copy answer.
    for button in services:
        assert sum(button.rect.contains(t.box) for t in scene.texts) == 1


def test_screens_already_rated_says_the_configured_window(display_settings):
    for minutes, words in ((30, "in the last 30 minutes"), (60, "in the last hour"),
                           (120, "in the last 2 hours")):
        assert words in wording.TITLES[Screen.ALREADY_RATED]["en"][1].format(
            window=wording.window_text(minutes, "en"))
    settings = dataclasses.replace(display_settings, repeat_window_min=45)
    scene = Renderer(settings).scene(View(Screen.ALREADY_RATED, "th", card_present=True))
    assert any("ในช่วง 45 นาทีที่ผ่านมา" in t.text for t in scene.texts)
    assert not any("วันนี้" in t.text for t in scene.texts)
    # The card is asked back: the banner, and OK leads the flow on to take-card.
    assert scene.surface.get_at((2, 2))[:3] == theme.BANNER
    assert any(t.text == wording.TITLES[Screen.TAKE_CARD]["th"][0] for t in scene.texts)


def test_screens_card_banner_only_after_the_read(display_settings):
    renderer = Renderer(display_settings)
    for screen in Screen:
        for card in (False, True):
            scene = renderer.scene(View(screen, "th", card_present=card))
            is_banner = scene.surface.get_at((2, 2))[:3] == theme.BANNER
            expected = card and screen not in (Screen.READING, Screen.RETURN_CARD,
                                               Screen.TAKE_CARD)
            assert is_banner == expected, (screen, card)


def test_screens_confirm_shows_the_answers_and_counts_down(display_settings):
    renderer = Renderer(display_settings)
    draft = flow.VisitDraft(0.0, verified=True, service_id=visit.OTHER_SERVICE,
                            copy_answer="not_sure", rating=4)
    state = State(screen=Screen.CONFIRM, visit=draft, deadline=106.0)
    scene = renderer.scene(View.of(state))
    assert scene.animate is not None
    before = pygame.Surface.copy(scene.surface)
    assert scene.animate(scene.surface, 101.5)  # 4.5 s left: the number and bar change
    assert scene.animate(scene.surface, 101.5) == []  # nothing new, nothing drawn
    assert pygame.image.tobytes(before, "RGB") != pygame.image.tobytes(scene.surface, "RGB")
    assert len(scene.texts) >= 2 * 3  # a name and a value per answer, and the countdown


@pytest.mark.parametrize("width,height,diagonal", SIZES)
def test_screens_confirm_names_share_one_size_and_values_another(display_settings, width,
                                                                  height, diagonal):
    (sample,) = [(n, s) for n, s in sample_states() if s.screen is Screen.CONFIRM]
    for _, metrics, scene in _scenes(display_settings, width, height, diagonal, [sample]):
        named = [t for t in scene.texts
                 if any(t.text in n.values() for n in wording.ANSWER_NAMES.values())]
        rows = named[0].box.unionall([t.box for t in named])
        table = pygame.Rect(0, rows.top, width, rows.height)
        values = [t for t in scene.texts if t not in named and table.contains(t.box)
                  and not any(b.rect.contains(t.box) for b in scene.buttons)]
        sending = [t for t in scene.texts if t.text[:3] in ("ส่ง", "Sen")]
        assert len(named) == len(values) == 4, (width, height)
        names, values = {t.px for t in named}, {t.px for t in values}
        assert len(names) == 1 and len(values) == 1, (width, height, names, values)
        if metrics.is_portrait:
            # The countdown bar runs under its words, most of the width (not a stub beside them).
            words = sending[0].box
            row = words.bottom + metrics.gap * 3 // 2
            filled = sum(scene.surface.get_at((x, row))[:3] == theme.PRIMARY[:3]
                         for x in range(width))
            assert filled > width // 2


@pytest.mark.parametrize("width,height,diagonal", [s for s in SIZES if s[0] < s[1]])
def test_screens_idle_portrait_keeps_the_subtitle_under_its_title(display_settings, width,
                                                                   height, diagonal):
    for where, metrics, scene in _scenes(display_settings, width, height, diagonal,
                                         [("idle", State())]):
        lang = where.split("/")[1]
        title, subtitle = wording.TITLES[Screen.IDLE][lang]
        (head,) = [t for t in scene.texts if t.text == title]
        (sub,) = [t for t in scene.texts if t.text == subtitle]
        assert 0 <= sub.box.top - head.box.bottom <= metrics.gap, where


def test_screens_rate_without_card_only_when_allowed(display_settings):
    allowed = Renderer(display_settings).scene(View(Screen.IDLE, "th"))
    refused = Renderer(dataclasses.replace(display_settings, allow_rating_without_card=False)
                       ).scene(View(Screen.IDLE, "th"))
    assert flow.StartedWithoutCard() in _actions(allowed)
    assert _actions(refused) == [flow.LanguageToggled()]


def test_screens_language_button_only_where_the_flow_takes_it(display_settings, make_config):
    renderer = Renderer(display_settings)
    for screen in Screen:
        has_button = flow.LanguageToggled() in _actions(renderer.scene(View(screen, "th")))
        state = State(screen=screen, visit=flow.VisitDraft(0.0, verified=True))
        settings = flow.FlowSettings.from_config(make_config())
        toggled, _ = flow.step(state, flow.LanguageToggled(), 1.0, settings)
        assert has_button == (toggled.language == "en"), screen


def test_screens_card_problem_says_what_happened_and_what_to_do(display_settings):
    renderer = Renderer(display_settings)
    assert set(wording.CARD_PROBLEMS) == set(flow.CARD_PROBLEMS)
    for problem in flow.CARD_PROBLEMS:
        scene = renderer.scene(View(Screen.CARD_PROBLEM, "en", problem=problem))
        title, steps = wording.CARD_PROBLEMS[problem]["en"]
        texts = [t.text for t in scene.texts]
        assert title in texts and all(step in texts for step in steps)
        assert next(b for b in scene.buttons if b.action == flow.Dismissed()).label == "Try again"
    scene = renderer.scene(View(Screen.CARD_PROBLEM, "th", problem="unreadable"))
    assert [t.text for t in scene.texts if t.text in ("1", "2", "3")] == ["1", "2", "3"]
    assert "This card cannot be used" not in str(wording.CARD_PROBLEMS)


def test_screens_out_of_service_is_thai_first_with_english_beside(display_settings):
    for language in ("th", "en"):
        scene = Renderer(display_settings).scene(
            View(Screen.OUT_OF_SERVICE, language, out_of_service="disk below floor"))
        thai = next(t for t in scene.texts if t.text == "เครื่องนี้งดให้บริการชั่วคราว")
        english = next(t for t in scene.texts if t.text == "This machine is out of service")
        assert thai.ink.right <= english.ink.left  # beside it, Thai on the left
        technician = next(t for t in scene.texts if t.text == "disk below floor")
        assert technician.px < thai.px and technician.ink.top > thai.ink.bottom
        # No Latin letter inside a Thai text on this screen.
        for t in scene.texts:
            if any("\u0e00" <= ch <= "\u0e7f" for ch in t.text):
                assert not any(ch.isascii() and ch.isalpha() for ch in t.text), t.text


def test_screens_thank_you_writes_the_portal_address_under_the_code(display_settings):
    for size in ((800, 480), (480, 800)):
        scene = Renderer(display_settings, size).scene(
            View(Screen.THANK_YOU, "th", portal_url="https://citizeninfo.go.th/portal?t=x"))
        address = next(t for t in scene.texts if "citizeninfo.go.th" in t.text)
        assert 0 <= address.ink.top - scene.qr_rect.bottom <= address.ink.height
        assert address.ink.left < scene.qr_rect.right and scene.qr_rect.left < address.ink.right
        caption = wording.TITLES[Screen.THANK_YOU]["th"][1]
        assert any(t.text == caption for t in scene.texts)
        assert scene.choices == [flow.Dismissed()]


@pytest.mark.parametrize("width,height,diagonal", SIZES)
def test_screens_rating_faces_are_one_row_or_one_column(display_settings, width, height,
                                                         diagonal):
    renderer = Renderer(dataclasses.replace(display_settings, diagonal_in=diagonal),
                        (width, height))
    scene = renderer.scene(View(Screen.RATING, "en"))
    faces = [b.rect for b in scene.buttons if isinstance(b.action, flow.RatingChosen)]
    assert len({r.top for r in faces}) == 1 or len({r.left for r in faces}) == 1
    # One ordered scale: 1 to 5 left to right, or top to bottom.
    assert faces == sorted(faces, key=lambda r: (r.left, r.top))
    # The five labels are the same size.
    sizes = {t.px for t in scene.texts if any(f.contains(t.box) for f in faces)}
    assert len(sizes) == 1


def test_screens_many_services_page_instead_of_shrinking(display_settings):
    services = tuple(ServiceInfo(f"s{i}", f"บริการที่ {i}", f"Service {i}")
                     for i in range(15))
    renderer = Renderer(dataclasses.replace(display_settings, services=services))
    seen = set()
    for page in range(10):
        actions = _actions(renderer.scene(View(Screen.CHOOSE_SERVICE, "th", page=page)))
        assert PageTurned() in actions
        seen |= {a.service_id for a in actions if isinstance(a, flow.ServiceChosen)}
    assert seen == {s.id for s in services} | {visit.OTHER_SERVICE}


def _decode(path):
    image = pygame.image.load(str(path))
    gray = bytes(image.get_at((x, y))[0] for y in range(image.get_height())
                 for x in range(image.get_width()))
    return [r.data.decode() for r in pyzbar.decode((gray, image.get_width(), image.get_height()))]


def test_screens_thank_you_qr_decodes_to_portal_with_a_fresh_token(make_display, tmp_path):
    display, _ = make_display()
    urls = []
    for n in range(2):
        display.show(State(screen=Screen.RATING))
        display.show(State(screen=Screen.THANK_YOU, card_present=True))
        display.save_png(tmp_path / f"thanks{n}.png")
        decoded = _decode(tmp_path / f"thanks{n}.png")
        assert len(decoded) == 1
        urls.append(decoded[0])
    tokens = []
    for url in urls:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == display.settings.portal_url
        query = parse_qs(parts.query)
        assert query["sp"] == [display.settings.service_point_id]
        tokens.append(query["t"][0])
    assert tokens[0] != tokens[1] and all(len(t) >= 16 for t in tokens)


def test_screens_qr_is_at_least_three_centimetres(display_settings):
    renderer = Renderer(display_settings)
    scene = renderer.scene(View(Screen.THANK_YOU, "th", portal_url="https://a.go.th/p?t=x"))
    assert scene.qr_rect.width >= 3 * renderer.metrics.px_per_cm


def test_screens_a_dropped_scene_is_freed_at_once(display_settings):
    # No reference cycle (an animation holding its canvas): every rebuilt screen would otherwise
    # keep its whole surface until the garbage collector ran (tens of MB in the UI benchmark).
    renderer = Renderer(display_settings)
    gc.disable()
    try:
        for name, state in sample_states():
            scene = renderer.scene(View.of(state, portal_url="https://a.go.th/p?t=x"))
            ref = weakref.ref(scene)
            del scene
            assert ref() is None, name
    finally:
        gc.enable()


def test_screens_a_forgotten_card_asks_a_passer_by_to_hand_it_to_staff(display_settings):
    renderer = Renderer(display_settings)
    for language in ("th", "en"):
        texts = {t.text for t in renderer.scene(
            View(Screen.TAKE_CARD, language, card_present=True, card_forgotten=True)).texts}
        assert set(wording.FORGOTTEN_CARD[language]) <= texts
        assert wording.TITLES[Screen.TAKE_CARD][language][0] not in texts
    assert wording.prompt_id(Screen.TAKE_CARD, None, True) == wording.FORGOTTEN_PROMPT
    assert wording.prompt_id(Screen.TAKE_CARD) == "take_card"


def test_screens_window_text_says_one_minute_in_the_singular():
    assert wording.window_text(1, "en") == "minute"
    assert wording.window_text(2, "en") == "2 minutes"
    assert wording.CARD_PROBLEMS["timeout"] == wording.CARD_PROBLEMS["unreadable"]
