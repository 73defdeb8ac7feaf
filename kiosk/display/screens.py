"""One drawing per flow :class:`~kiosk.flow.Screen`, chosen through :data:`SCREENS`.

A drawing reads a :class:`View` (the few State fields a screen depends on) and paints a whole
:class:`Scene` once: a finished surface plus the buttons on it, each mapped to the flow event a
tap produces. Nothing here changes the flow's State; equal Views give equal Scenes, so the
display rebuilds only when the View changes and a steady screen costs nothing per frame.
"""

import math
from dataclasses import dataclass, field

import pygame
import pygame.gfxdraw

from kiosk import flow
from kiosk.display import layout, pictures, qr, theme, wording
from kiosk.display.text import Fonts, draw_block, layout_block
from kiosk.flow import Screen
from kiosk.visit import RETIRED_REASONS

#: Screens whose flow handler accepts LanguageToggled get a language button.
LANGUAGE_SCREENS = frozenset({Screen.IDLE, Screen.READING, Screen.CARD_PROBLEM,
                              Screen.ALREADY_RATED, *flow.QUESTION_SCREENS})


@dataclass(frozen=True)
class PageTurned:
    """Display-internal: the citizen asked for the next page of services (not a flow event)."""


@dataclass(frozen=True)
class View:
    """Everything a screen's drawing depends on."""

    screen: Screen
    language: str
    problem: str | None = None
    out_of_service: str | None = None
    card_present: bool = False
    page: int = 0
    #: The thank-you screen's per-visit portal URL (holds the random token).
    portal_url: str | None = None

    @classmethod
    def of(cls, state, *, page=0, portal_url=None):
        return cls(screen=state.screen, language=state.language, problem=state.problem,
                   out_of_service=state.out_of_service, card_present=state.card_present,
                   page=page if state.screen is Screen.CHOOSE_SERVICE else 0,
                   portal_url=portal_url if state.screen is Screen.THANK_YOU else None)


@dataclass
class Button:
    rect: pygame.Rect
    action: object
    label: str


@dataclass
class Scene:
    surface: pygame.Surface
    buttons: list = field(default_factory=list)
    #: The actions of the screen's choices in reading order, the main action first: physical
    #: choice button n chooses the n-th (Back and the language have buttons of their own).
    choices: list = field(default_factory=list)
    #: (ink rect, box it had to stay in) for every text block: the overflow tests read these.
    texts: list = field(default_factory=list)
    #: Optional ``animate(surface, now) -> [dirty rects]`` for a small moving part.
    animate: object = None
    #: Where the QR code landed (thank-you only), for tests and screenshots.
    qr_rect: pygame.Rect | None = None

    def hit(self, pos):
        """The button under ``pos``, or None."""
        return next((b for b in self.buttons if b.rect.collidepoint(pos)), None)


class _Canvas:
    """Drawing helpers for one scene; records buttons and text boxes as it goes."""

    def __init__(self, renderer, view):
        self.settings = renderer.settings
        self.m = renderer.metrics
        self.fonts = renderer.fonts
        self.view = view
        self.lang = view.language
        self.surface = pygame.Surface((self.m.width, self.m.height))
        self.surface.fill(theme.BACKGROUND)
        self.scene = Scene(self.surface)
        self.header, self.content = layout.frame(self.m)

    def text(self, text, box, *, size="body", role="ui", colour=theme.INK, align="center",
             valign="center", max_lines=None, min_size=None):
        if not text or box.width <= 0 or box.height <= 0:
            return None
        min_px = self.m.font_px(min_size) if min_size else None
        block = layout_block(self.fonts, role, text, box, max_px=self.m.font_px(size),
                             min_px=min_px, colour=colour, align=align, valign=valign,
                             max_lines=max_lines)
        draw_block(self.surface, block)
        self.scene.texts.append((block.rect, box))
        return block

    def line_h(self, size, role="ui", lines=1):
        return self.fonts.get(role, self.m.font_px(size)).get_linesize() * lines

    def button(self, rect, label, action, *, style="plain", size="body", badge=None):
        radius = max(8, self.m.gap)
        if style == "primary":
            fill, ink, border = theme.PRIMARY, theme.ON_PRIMARY, theme.PRIMARY
        else:
            fill, ink, border = theme.SURFACE, theme.INK, theme.BORDER
        pygame.draw.rect(self.surface, fill, rect, border_radius=radius)
        pygame.draw.rect(self.surface, border, rect, width=2, border_radius=radius)
        pad = max(6, self.m.gap)
        inner = rect.inflate(-2 * pad, -2 * pad)
        if badge:
            badge_h = self.line_h("small") + pad // 2
            badge_box, inner = layout.take_bottom(inner, badge_h, gap=pad // 2)
            self._badge(badge_box, badge)
        self.text(label, inner, size=size, role="ui_bold", colour=ink, max_lines=3,
                  min_size="small")
        self.choice(rect, label, action)

    def choice(self, rect, label, action):
        """A touch target that is also the scene's next choice for the physical buttons."""
        self.scene.buttons.append(Button(pygame.Rect(rect), action, label))
        if not isinstance(action, flow.Back):
            self.scene.choices.append(action)

    def _badge(self, box, status):
        label = wording.NO_COPY[status][self.lang]
        font = self.fonts.for_text("ui_bold", self.m.font_px("small"), label)
        pad = max(6, self.m.gap)
        w = min(box.width, font.size(label)[0] + 2 * pad)
        pill = pygame.Rect(box.left + (box.width - w) // 2, box.top, w, box.height)
        pygame.draw.rect(self.surface, theme.BADGES[status], pill, border_radius=box.height // 2)
        self.text(label, pill.inflate(-2 * pad, 0), size="small", role="ui_bold",
                  colour=theme.ON_BADGE, max_lines=1, min_size="small")

    def draw_header(self):
        pygame.draw.rect(self.surface, theme.HEADER, self.header)
        name_box = self.header.inflate(-2 * self.m.margin, -self.m.gap)
        if self.view.screen in LANGUAGE_SCREENS:
            lang_w = round(self.m.target * 1.6)
            lang = pygame.Rect(self.header.right - lang_w, 0, lang_w, self.header.height)
            name_box.width = lang.left - name_box.left - self.m.gap
            self._language_button(lang)
        name = self.settings.name_th if self.lang == "th" else self.settings.name_en
        self.text(name or self.settings.name_th, name_box, size="heading", role="ui_bold",
                  colour=theme.ON_HEADER, align="left", max_lines=2, min_size="small")

    def _language_button(self, rect):
        # The whole header-high strip is the target; the visible pill sits inside it.
        pill = rect.inflate(-self.m.gap * 2, -self.m.gap * 2)
        pygame.draw.rect(self.surface, theme.PRIMARY, pill, border_radius=pill.height // 2)
        pygame.draw.rect(self.surface, theme.ON_PRIMARY, pill, width=2,
                         border_radius=pill.height // 2)
        label = wording.BUTTONS["language"][self.lang]
        self.text(label, pill.inflate(-self.m.gap * 2, -4), size="body", role="ui_bold",
                  colour=theme.ON_PRIMARY, max_lines=1, min_size="small")
        self.scene.buttons.append(Button(pygame.Rect(rect), flow.LanguageToggled(), label))

    def title(self, area, *, colour=theme.INK, lines=None):
        """The screen's question or title across the top of ``area``; returns the rest."""
        title, subtitle = wording.TITLES[self.view.screen][self.lang]
        lines = lines or (2 if self.m.is_portrait else 1)
        box, rest = layout.take_top(area, self.line_h("title", "title", lines), gap=self.m.gap)
        self.text(title, box, size="title", role="title", colour=colour, max_lines=lines,
                  min_size="body")
        if subtitle:
            box, rest = layout.take_top(rest, self.line_h("body", lines=2 if self.m.is_portrait
                                                          else 1), gap=self.m.gap)
            self.text(subtitle, box, size="body", colour=theme.MUTED, min_size="small")
        return rest

    def button_row(self, area, buttons):
        """``buttons`` = [(label, action, style)] side by side along the bottom of ``area``."""
        row, rest = layout.take_bottom(area, self.m.target, gap=self.m.gap)
        width = min(row.width, len(buttons) * round(self.m.target * 2.6)
                    + (len(buttons) - 1) * self.m.gap)
        row = pygame.Rect(row.centerx - width // 2, row.top, width, row.height)
        for cell, (label, action, style) in zip(layout.columns(row, len(buttons), self.m.gap),
                                                buttons, strict=True):
            self.button(cell, label, action, style=style)
        return rest

    def choice_grid(self, area, choices, *, min_w_targets=2.0):
        """[(label, action, badge)] as a grid of big buttons filling ``area``."""
        gap = self.m.gap
        cols = layout.best_columns(area, len(choices), gap, self.m.target * min_w_targets,
                                   self.m.target) or layout.best_columns(
                                       area, len(choices), gap, self.m.target, self.m.target)
        cols = cols or len(choices)
        max_h = round(self.m.target * 1.6)
        for cell, (label, action, badge) in zip(
                layout.grid(area, len(choices), cols, gap, max_cell_h=max_h), choices,
                strict=True):
            self.button(cell, label, action, badge=badge)


# --- pictures ---------------------------------------------------------------------------------


def _card_picture(surface, box, *, inserting):
    """A card going into (or coming out of) a reader slot, with an arrow saying which."""
    s = min(box.width, box.height)
    cx, cy = box.center
    slot = pygame.Rect(0, 0, round(s * 0.9), round(s * 0.16))
    slot.center = (cx, cy + round(s * 0.3))
    card = pygame.Rect(0, 0, round(s * 0.56), round(s * 0.56 * 0.63))
    card.midbottom = (cx, slot.centery)
    r = max(4, s // 30)
    pygame.draw.rect(surface, (205, 224, 240), card, border_radius=r)
    pygame.draw.rect(surface, theme.PRIMARY, card, width=max(2, s // 60), border_radius=r)
    chip = pygame.Rect(card.left + card.width // 6, card.top + card.height // 4,
                       card.width // 5, card.height // 4)
    pygame.draw.rect(surface, (212, 175, 55), chip, border_radius=max(2, r // 2))
    pygame.draw.rect(surface, theme.INK, slot, border_radius=slot.height // 2)
    # Arrow beside the card: down = insert, up = take.
    ax = card.right + round(s * 0.14)
    top, bottom = card.top, slot.top - round(s * 0.04)
    head = round(s * 0.08)
    width = max(4, s // 25)
    pygame.draw.line(surface, theme.PRIMARY, (ax, top + (head if not inserting else 0)),
                     (ax, bottom - (head if inserting else 0)), width)
    if inserting:
        tip = [(ax - head, bottom - head), (ax + head, bottom - head), (ax, bottom)]
    else:
        tip = [(ax - head, top + head), (ax + head, top + head), (ax, top)]
    pygame.gfxdraw.aapolygon(surface, tip, theme.PRIMARY)
    pygame.gfxdraw.filled_polygon(surface, tip, theme.PRIMARY)


def _face(surface, center, radius, rating):
    pictures.face(surface, center, radius, rating)


# --- the screens ------------------------------------------------------------------------------


def _idle(c):
    c.draw_header()
    area = c.content
    if c.settings.allow_rating_without_card:
        area = c.button_row(area, [(wording.BUTTONS["without_card"][c.lang],
                                    flow.StartedWithoutCard(), "plain")])
    privacy, area = layout.take_bottom(area, c.line_h("small", lines=2), gap=c.m.gap)
    c.text(wording.PRIVACY[c.lang], privacy, size="small", colour=theme.MUTED, max_lines=2)
    title, subtitle = wording.TITLES[Screen.IDLE][c.lang]
    if c.m.is_portrait:
        picture, words = layout.take_top(area, round(area.height * 0.5), gap=c.m.gap)
    else:
        picture, words = layout.columns(area, 2, c.m.gap)
        picture.width = round(area.width * 0.35)
        words.left, words.width = picture.right + c.m.gap, area.right - picture.right - c.m.gap
    _card_picture(c.surface, picture, inserting=True)
    head, rest = layout.take_top(words, round(words.height * 0.62), gap=c.m.gap)
    c.text(title, head, size="title", role="title", valign="bottom", max_lines=3,
           min_size="heading")
    c.text(subtitle, rest, size="body", colour=theme.MUTED, valign="top", max_lines=2)


def _reading(c):
    c.draw_header()
    rest = c.title(c.content)
    dots = pygame.Rect(0, 0, min(rest.width, c.m.target * 3), min(rest.height, c.m.target))
    dots.center = rest.center
    radius = max(6, dots.height // 6)
    c.surface.fill(theme.BACKGROUND, dots)
    phase = {"shown": None}

    def animate(surface, now):
        lit = int(now * 3) % 4
        if lit == phase["shown"]:
            return []
        phase["shown"] = lit
        surface.fill(theme.BACKGROUND, dots)
        for i in range(3):
            x = dots.left + dots.width * (i + 1) // 4
            colour = theme.PRIMARY if i < lit else theme.BORDER
            pygame.gfxdraw.filled_circle(surface, x, dots.centery, radius, colour)
            pygame.gfxdraw.aacircle(surface, x, dots.centery, radius, colour)
        return [dots]

    animate(c.surface, 0.0)
    c.scene.animate = animate


def _information(c, body, *, alert):
    c.draw_header()
    buttons = [(wording.BUTTONS["ok"][c.lang], flow.Dismissed(), "primary")]
    if c.view.screen is Screen.CARD_PROBLEM and c.settings.allow_rating_without_card:
        buttons.append((wording.BUTTONS["without_card"][c.lang], flow.StartedWithoutCard(),
                        "plain"))
    area = c.button_row(c.content, buttons)
    rest = c.title(area, colour=theme.ALERT if alert else theme.INK)
    c.text(body, rest, size="heading", max_lines=4, min_size="body")


def _card_problem(c):
    problem = c.view.problem if c.view.problem in wording.CARD_PROBLEMS else "unreadable"
    _information(c, wording.CARD_PROBLEMS[problem][c.lang], alert=True)


def _already_rated(c):
    _information(c, "", alert=False)


def _service_label(c, service):
    return service.name_th if c.lang == "th" else (service.name_en or service.name_th)


def _choose_service(c):
    c.draw_header()
    area = c.title(c.content)
    services = c.settings.services
    gap, t = c.m.gap, c.m.target
    fits = layout.capacity(area, gap, t * 2, t)
    if c.settings.choice_buttons:  # what the buttons choose is what the page shows
        fits = min(fits, c.settings.choice_buttons)
    if len(services) <= fits:
        page_items = [(_service_label(c, s), flow.ServiceChosen(s.id), s.no_copy)
                      for s in services]
    else:
        per_page = max(1, fits - 1)
        pages = math.ceil(len(services) / per_page)
        start = (c.view.page % pages) * per_page
        page_items = [(_service_label(c, s), flow.ServiceChosen(s.id), s.no_copy)
                      for s in services[start:start + per_page]]
        more = f"{wording.BUTTONS['more'][c.lang]} ({c.view.page % pages + 1}/{pages})"
        page_items.append((more, PageTurned(), None))
    c.choice_grid(area, page_items)


def _copy_check(c):
    c.draw_header()
    area = c.title(c.content)
    c.choice_grid(area, [(wording.COPY_ANSWERS[a][c.lang], flow.CopyAnswered(a), None)
                         for a in flow.COPY_ANSWERS])


def _rating(c):
    c.draw_header()
    area = c.title(c.content)
    gap, t = c.m.gap, c.m.target
    label_h = c.line_h("body", lines=2)
    count = len(flow.RATINGS)
    if count * t + (count - 1) * gap <= area.width and t + label_h <= area.height:
        cells = layout.grid(area, count, count, gap, max_cell_h=t * 2 + label_h)
        arrangement = "row"
    elif count * t + (count - 1) * gap <= area.height:
        cells = layout.grid(area, count, 1, gap, max_cell_h=round(t * 1.3))
        arrangement = "column"
    else:
        cells = layout.grid(area, count, 3, gap)
        arrangement = "row"
    for rating, cell in zip(flow.RATINGS, cells, strict=True):
        label = wording.RATINGS[rating][c.lang]
        pygame.draw.rect(c.surface, theme.SURFACE, cell, border_radius=gap)
        pygame.draw.rect(c.surface, theme.BORDER, cell, width=2, border_radius=gap)
        inner = cell.inflate(-gap, -gap)
        if arrangement == "row":
            label_box, face_box = layout.take_bottom(inner, min(label_h, inner.height // 2))
        else:
            face_box = pygame.Rect(inner.left, inner.top, inner.height, inner.height)
            label_box = pygame.Rect(face_box.right + gap, inner.top,
                                    inner.right - face_box.right - gap, inner.height)
        radius = max(8, min(face_box.width, face_box.height) // 2 - 2)
        _face(c.surface, face_box.center, radius, rating)
        c.text(label, label_box, size="body", role="ui_bold", max_lines=2, min_size="small",
               align="center" if arrangement == "row" else "left")
        c.choice(cell, label, flow.RatingChosen(rating))


def _reason(c):
    c.draw_header()
    area = c.title(c.content)
    choices = [(wording.REASONS[r][c.lang], flow.ReasonChosen(r), None) for r in flow.REASONS
               if r not in RETIRED_REASONS]
    choices.append((wording.BUTTONS["skip"][c.lang], flow.ReasonChosen(None), None))
    c.choice_grid(area, choices, min_w_targets=1.6)


def _thank_you(c):
    c.draw_header()
    gap = c.m.gap
    title, caption = wording.TITLES[Screen.THANK_YOU][c.lang]
    code = qr.render(c.view.portal_url, c.m.qr_min) if c.view.portal_url else None
    side = code.get_width() if code else 0
    caption_h = c.line_h("small", lines=2)
    reminder_h = c.line_h("heading", lines=2) if c.view.card_present else 0
    done = [(wording.BUTTONS["done"][c.lang], flow.Dismissed(), "primary")]
    if c.m.is_portrait:
        area = c.button_row(c.content, done)
        words, rest = layout.take_top(area, c.line_h("title", "title"), gap=gap)
        qr_box, rest = layout.take_top(rest, side, gap=gap)
        caption_box, rest = layout.take_top(rest, caption_h, gap=gap)
        reminder_box = layout.take_bottom(rest, reminder_h)[0]
    else:
        # The code gets a full-height column of its own; the words and Done share the other.
        column = pygame.Rect(c.content.right - side, c.content.top, side, c.content.height)
        qr_box, caption_box = layout.take_top(column, side, gap=gap)
        words = pygame.Rect(c.content.left, c.content.top,
                            column.left - c.content.left - 2 * gap, c.content.height)
        words = c.button_row(words, done)
        reminder_box, words = layout.take_bottom(words, reminder_h, gap=gap)
    c.text(title, words, size="title", role="title", max_lines=3, min_size="heading")
    if code:
        place = code.get_rect(center=qr_box.center)
        c.surface.blit(code, place)
        c.scene.qr_rect = place
    c.text(caption, caption_box, size="small", colour=theme.MUTED, max_lines=2, valign="top")
    if c.view.card_present:
        pygame.draw.rect(c.surface, theme.SURFACE, reminder_box, border_radius=gap)
        c.text(wording.TITLES[Screen.TAKE_CARD][c.lang][0], reminder_box.inflate(-gap, 0),
               size="heading", role="ui_bold", colour=theme.ALERT, max_lines=2,
               min_size="body")


def _take_card(c):
    c.draw_header()
    area = c.title(c.content, lines=2)
    _card_picture(c.surface, area, inserting=False)


def _out_of_service(c):
    c.draw_header()
    area = c.title(c.content, lines=2)
    note, area = layout.take_bottom(area, c.line_h("small", lines=3), gap=c.m.gap)
    reason = c.view.out_of_service or "-"
    c.text(wording.TECHNICIAN[c.lang].format(reason=reason), note, size="small",
           colour=theme.MUTED, max_lines=3, valign="bottom")


#: Screen -> drawing; the display has exactly one drawing per flow Screen.
SCREENS = {
    Screen.IDLE: _idle,
    Screen.READING: _reading,
    Screen.CARD_PROBLEM: _card_problem,
    Screen.ALREADY_RATED: _already_rated,
    Screen.CHOOSE_SERVICE: _choose_service,
    Screen.COPY_CHECK: _copy_check,
    Screen.RATING: _rating,
    Screen.REASON: _reason,
    Screen.THANK_YOU: _thank_you,
    Screen.TAKE_CARD: _take_card,
    Screen.OUT_OF_SERVICE: _out_of_service,
    # Placeholders until the second pass draws them (issue 14).
    Screen.RETURN_CARD: _take_card,
    Screen.CONFIRM: _take_card,
}


class Renderer:
    """Builds Scenes for one panel size; fonts are opened once and shared by every scene."""

    def __init__(self, settings, size=None, fonts=None):
        self.settings = settings
        width, height = size or (settings.width, settings.height)
        self.metrics = theme.Metrics(width, height, settings.diagonal_in)
        self.fonts = fonts or Fonts()

    def scene(self, view):
        canvas = _Canvas(self, view)
        SCREENS[view.screen](canvas)
        return canvas.scene
