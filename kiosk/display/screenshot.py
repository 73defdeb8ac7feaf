"""Every screen × language × resolution as PNG files (the ``kiosk screenshot`` verb's work).

Renders off-screen (no window, SDL dummy driver), from representative flow States, so the
committed docs/screens/ and an agency's review of its own service names come from the same code
the kiosk runs.
"""

import os
from dataclasses import replace
from pathlib import Path

from kiosk.display.settings import DisplaySettings, ServiceInfo
from kiosk.flow import LANGUAGES, Screen, State, VisitDraft

#: (width, height, diagonal in inches): the official 7" panel, common 7" and 10" panels, portrait.
SIZES = ((800, 480, 7.0), (1024, 600, 7.0), (1280, 800, 10.1), (480, 800, 7.0),
         (600, 1024, 7.0))

#: Used when no config is given, so the screens can be reviewed on any machine.
SAMPLE = DisplaySettings(
    name_th="สำนักงานเขตบางรัก", name_en="Bang Rak District Office",
    service_point_id="BKK-1004-01", portal_url="https://citizeninfo.go.th/portal",
    allow_rating_without_card=True,
    services=(
        ServiceInfo("id_card", "ทำบัตรประจำตัวประชาชน", "ID card"),
        ServiceInfo("house_reg", "งานทะเบียนบ้าน", "House registration"),
        ServiceInfo("birth", "แจ้งเกิด", "Birth registration"),
        ServiceInfo("name_change", "เปลี่ยนชื่อ-ชื่อสกุล", "Change of name or surname"),
    ),
)


def sample_states():
    """(name, State) for every Screen: what a citizen would typically see there."""
    states = []
    for screen in Screen:
        extra = {}
        if screen is Screen.CARD_PROBLEM:
            extra["problem"] = "unreadable"
        # The card left in: the reminder banner these screens show until it is taken.
        if screen in (Screen.READING, Screen.RETURN_CARD, Screen.CARD_PROBLEM,
                      Screen.ALREADY_RATED, Screen.THANK_YOU, Screen.TAKE_CARD):
            extra["card_present"] = True
        if screen is Screen.CONFIRM:
            extra["visit"] = VisitDraft(0.0, verified=True, service_id="name_change",
                                        copy_answer="id_card", rating=2, reason="waiting_time")
        if screen is Screen.OUT_OF_SERVICE:
            extra["out_of_service"] = "disk below floor: 120 MB free, 200 MB needed"
        states.append((screen.value, State(screen=screen, **extra)))
    return states


def render_all(settings, out_dir, sizes=SIZES, languages=LANGUAGES):
    """Write ``<screen>-<language>-<w>x<h>.png`` for every combination; returns the paths."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    import pygame

    from kiosk.display import qr
    from kiosk.display.screens import Renderer, View
    from kiosk.display.text import Fonts

    pygame.display.init()
    fonts = Fonts()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # A fixed, obviously fake token: screenshots are documentation, not visits.
    url = qr.portal_url(settings.portal_url, settings.service_point_id, "SCREENSHOT")
    for width, height, diagonal in sizes:
        renderer = Renderer(replace(settings, diagonal_in=diagonal), (width, height), fonts)
        for name, state in sample_states():
            for language in languages:
                view = View.of(replace(state, language=language), portal_url=url)
                path = out_dir / f"{name}-{language}-{width}x{height}.png"
                pygame.image.save(renderer.scene(view).surface, str(path))
                written.append(path)
    return written
