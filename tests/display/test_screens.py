import dataclasses
import itertools
from urllib.parse import parse_qs, urlsplit

import pygame
import pytest
from pyzbar import pyzbar

from kiosk import flow
from kiosk.display import wording
from kiosk.display.screens import SCREENS, PageTurned, Renderer, View
from kiosk.display.screenshot import SIZES, sample_states
from kiosk.display.settings import ServiceInfo
from kiosk.flow import Screen, State
from kiosk.visit import RETIRED_REASONS


def test_screens_one_drawing_per_flow_screen():
    assert set(SCREENS) == set(Screen)


@pytest.mark.parametrize("width,height,diagonal", SIZES)
def test_screens_every_screen_fits_every_resolution(display_settings, width, height, diagonal):
    renderer = Renderer(dataclasses.replace(display_settings, diagonal_in=diagonal),
                        (width, height))
    screen_rect = pygame.Rect(0, 0, width, height)
    target = renderer.metrics.target
    for (name, state), language in itertools.product(sample_states(), ("th", "en")):
        view = View.of(dataclasses.replace(state, language=language),
                       portal_url="https://citizeninfo.go.th/portal?sp=X&t=abc")
        scene = renderer.scene(view)
        where = f"{name}/{language}/{width}x{height}"
        assert scene.texts, where
        for ink, box in scene.texts:
            assert box.contains(ink), f"{where}: text overflows its box"
            assert screen_rect.contains(box), f"{where}: text box leaves the screen"
        for a, b in itertools.combinations(scene.buttons, 2):
            assert not a.rect.colliderect(b.rect), f"{where}: {a.label} overlaps {b.label}"
        for button in scene.buttons:
            assert screen_rect.contains(button.rect), f"{where}: {button.label} off screen"
            assert min(button.rect.size) >= target, f"{where}: {button.label} under 2 cm"
        if scene.qr_rect:
            assert screen_rect.contains(scene.qr_rect)
            assert not any(b.rect.colliderect(scene.qr_rect) for b in scene.buttons)


def _actions(scene):
    return [b.action for b in scene.buttons]


@pytest.mark.parametrize("language", ["th", "en"])
def test_screens_question_buttons_map_to_flow_events(display_settings, language):
    renderer = Renderer(display_settings)
    scene = lambda screen: renderer.scene(View(screen, language))  # noqa: E731
    assert set(_actions(scene(Screen.COPY_CHECK))) == {
        flow.LanguageToggled(), *(flow.CopyAnswered(a) for a in flow.COPY_ANSWERS)}
    assert set(_actions(scene(Screen.RATING))) == {
        flow.LanguageToggled(), *(flow.RatingChosen(r) for r in flow.RATINGS)}
    assert set(_actions(scene(Screen.REASON))) == {
        flow.LanguageToggled(), flow.ReasonChosen(None),
        *(flow.ReasonChosen(r) for r in flow.REASONS if r not in RETIRED_REASONS)}
    assert set(_actions(scene(Screen.CHOOSE_SERVICE))) == {
        flow.LanguageToggled(), *(flow.ServiceChosen(s.id) for s in display_settings.services)}


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


def test_screens_card_problem_names_each_reason(display_settings):
    renderer = Renderer(display_settings)
    for problem in flow.CARD_PROBLEMS:
        scene = renderer.scene(View(Screen.CARD_PROBLEM, "en", problem=problem))
        assert flow.Dismissed() in _actions(scene)
    assert set(wording.CARD_PROBLEMS) == set(flow.CARD_PROBLEMS)


def test_screens_rating_faces_go_to_a_column_or_rows_when_narrow(display_settings):
    wide = Renderer(display_settings, (800, 480)).scene(View(Screen.RATING, "th"))
    narrow = Renderer(display_settings, (480, 800)).scene(View(Screen.RATING, "th"))
    tops = lambda scene: {b.rect.top for b in scene.buttons  # noqa: E731
                          if isinstance(b.action, flow.RatingChosen)}
    assert len(tops(wide)) == 1
    assert len(tops(narrow)) > 1


def test_screens_many_services_page_instead_of_shrinking(display_settings):
    services = tuple(ServiceInfo(f"s{i}", f"บริการที่ {i}", f"Service {i}", "not_yet")
                     for i in range(15))
    renderer = Renderer(dataclasses.replace(display_settings, services=services))
    seen = set()
    for page in range(10):
        actions = _actions(renderer.scene(View(Screen.CHOOSE_SERVICE, "th", page=page)))
        assert PageTurned() in actions
        seen |= {a.service_id for a in actions if isinstance(a, flow.ServiceChosen)}
    assert seen == {s.id for s in services}


def _decode(path):
    image = pygame.image.load(str(path))
    gray = bytes(image.get_at((x, y))[0] for y in range(image.get_height())
                 for x in range(image.get_width()))
    return [r.data.decode() for r in pyzbar.decode((gray, image.get_width(), image.get_height()))]


def test_screens_thank_you_qr_decodes_to_portal_with_a_fresh_token(make_display, tmp_path):
    display, _ = make_display()
    urls = []
    for visit in range(2):
        display.show(State(screen=Screen.RATING))
        display.show(State(screen=Screen.THANK_YOU, card_present=True))
        display.save_png(tmp_path / f"thanks{visit}.png")
        decoded = _decode(tmp_path / f"thanks{visit}.png")
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
