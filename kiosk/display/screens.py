"""One drawing per flow :class:`~kiosk.flow.Screen`, chosen through :data:`SCREENS`.

A drawing reads a :class:`View` (the few State fields a screen depends on) and paints a whole
:class:`Scene` once: a finished surface plus the buttons on it, each mapped to the flow event a
tap produces. Nothing here changes the flow's State; equal Views give equal Scenes, so the
display rebuilds only when the View changes and a steady screen costs nothing per frame.
"""

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pygame
import pygame.gfxdraw

from kiosk import flow, visit
from kiosk.display import layout, pictures, qr, theme, wording
from kiosk.display.text import Fonts, TextBox, draw_block, layout_block, wrap
from kiosk.flow import Screen

#: Screens whose flow handler accepts LanguageToggled get a language button.
LANGUAGE_SCREENS = frozenset({Screen.IDLE, Screen.READING, Screen.RETURN_CARD,
                              Screen.CARD_PROBLEM, Screen.ALREADY_RATED, *flow.QUESTION_SCREENS,
                              Screen.CONFIRM})
#: Screens that are themselves about the card in the reader; every other one shows the
#: "please take your card" banner while a card is in.
CARD_SCREENS = frozenset({Screen.READING, Screen.RETURN_CARD, Screen.TAKE_CARD})
#: The reasons a low rating offers: the schema's, less those only kept for stored visits.
OFFERED_REASONS = tuple(r for r in visit.REASONS if r not in visit.RETIRED_REASONS)


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
    #: Take-card with its owner gone: a passer-by is asked to hand the card to staff.
    card_forgotten: bool = False
    page: int = 0
    #: The thank-you screen's per-visit portal URL (holds the random token).
    portal_url: str | None = None
    #: The confirm screen's (service_id, copy_answer, rating, reason) and its deadline.
    answers: tuple | None = None
    deadline: float | None = None

    @classmethod
    def of(cls, state, *, page=0, portal_url=None):
        confirm = state.screen is Screen.CONFIRM and state.visit is not None
        v = state.visit
        return cls(screen=state.screen, language=state.language, problem=state.problem,
                   out_of_service=state.out_of_service, card_present=state.card_present,
                   card_forgotten=state.card_forgotten,
                   page=page if state.screen is Screen.CHOOSE_SERVICE else 0,
                   portal_url=portal_url if state.screen is Screen.THANK_YOU else None,
                   answers=(v.service_id, v.copy_answer, v.rating, v.reason) if confirm else None,
                   deadline=state.deadline if confirm else None)


@dataclass
class Button:
    rect: pygame.Rect
    action: object
    label: str
    #: ``choice`` (an answer or the screen's own action, in reading order) or ``nav`` (Back,
    #: language, which have physical buttons of their own).
    kind: str = "choice"


@dataclass
class Scene:
    surface: pygame.Surface
    buttons: list = field(default_factory=list)
    #: A :class:`~kiosk.display.text.TextBox` per text block: the layout tests read these.
    texts: list = field(default_factory=list)
    #: Optional ``animate(surface, now) -> [dirty rects]`` for a small moving part.
    animate: object = None
    #: Where the QR code landed (thank-you only), for tests and screenshots.
    qr_rect: pygame.Rect | None = None
    #: The coloured strip along the top (the office's name, or the card reminder).
    header: pygame.Rect | None = None

    @property
    def choices(self):
        """The actions of the screen's choices in reading order, the main action first:
        physical choice button n chooses the n-th (Back and the language have buttons of their
        own)."""
        return [b.action for b in self.buttons if b.kind == "choice"]

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
        self._nav = []

    def finish(self):
        # Nav buttons go last, so the scene's choices come first in its button list.
        self.scene.buttons.extend(self._nav)
        return self.scene

    # --- text ---------------------------------------------------------------------------------

    def _block(self, text, box, *, size="body", role="ui", colour=theme.INK, align="center",
               valign="center", max_lines=None, min_size=None, px=None):
        floor = self.m.min_text_px
        if px:
            max_px = min_px = max(px, floor)
        else:
            max_px = self.m.font_px(size)
            min_px = max(floor, self.m.font_px(min_size) if min_size else max_px * 2 // 3)
        return layout_block(self.fonts, role, text, box, max_px=max_px, min_px=min_px,
                            colour=colour, align=align, valign=valign, max_lines=max_lines)

    def text(self, text, box, **kw):
        if not text or box.width <= 0 or box.height <= 0:
            return None
        block = self._block(text, box, **kw)
        draw_block(self.surface, block)
        self.scene.texts.append(TextBox(text, block.rect, pygame.Rect(box), block.size))
        return block

    def common_px(self, items, **kw):
        """The one size at which every (text, box) of a set fits: labels of a set stay alike."""
        sizes = [self._block(text, box, **kw).size for text, box in items
                 if text and box.width > 0 and box.height > 0]
        return min(sizes, default=None)

    def line_h(self, size, role="ui", lines=1):
        return self.fonts.get(role, self.m.font_px(size)).get_linesize() * lines

    # --- buttons ------------------------------------------------------------------------------

    def _frame(self, rect, style):
        radius = max(8, self.m.gap)
        fill, ink, border, width = {
            "primary": (theme.PRIMARY, theme.ON_PRIMARY, theme.PRIMARY, 2),
            "plain": (theme.SURFACE, theme.INK, theme.BORDER, 2),
            # Back, language, skip: paper with a navy outline, unlike any answer.
            "nav": (theme.BACKGROUND, theme.PRIMARY, theme.PRIMARY, max(3, self.m.gap // 3)),
        }[style]
        pygame.draw.rect(self.surface, fill, rect, border_radius=radius)
        pygame.draw.rect(self.surface, border, rect, width=width, border_radius=radius)
        return ink

    def button(self, rect, label, action, *, style="plain", size="body", px=None,
               kind="choice"):
        ink = self._frame(rect, style)
        self.text(label, self.label_box(rect), size=size, role="ui_bold", colour=ink,
                  max_lines=3, min_size="small", px=px)
        button = Button(pygame.Rect(rect), action, label, kind)
        (self._nav if kind == "nav" else self.scene.buttons).append(button)

    def label_box(self, rect):
        pad = max(6, self.m.gap)
        return rect.inflate(-2 * pad, -2 * pad)

    def _nav_button(self, rect, label, action, *, on_dark):
        if on_dark:
            # The whole bar-high strip is the target; the visible pill sits inside it.
            pill = rect.inflate(-self.m.gap, -self.m.gap * 2)
            pygame.draw.rect(self.surface, theme.PRIMARY, pill, border_radius=self.m.gap)
            pygame.draw.rect(self.surface, theme.ON_PRIMARY, pill, width=2,
                             border_radius=self.m.gap)
            self.text(label, pill.inflate(-self.m.gap, -4), size="body", role="ui_bold",
                      colour=theme.ON_PRIMARY, max_lines=2, min_size="small")
            self._nav.append(Button(pygame.Rect(rect), action, label, "nav"))
        else:
            self.button(rect, label, action, style="nav", kind="nav")

    def button_row(self, area, buttons, *, height=None, align="center"):
        """``buttons`` = [(label, action, style)] side by side along the bottom of ``area``."""
        row, rest = layout.take_bottom(area, height or self.m.target, gap=self.m.gap)
        width = min(row.width, len(buttons) * round(self.m.target * 2.8)
                    + (len(buttons) - 1) * self.m.gap)
        left = row.centerx - width // 2 if align == "center" else row.right - width
        row = pygame.Rect(left, row.top, width, row.height)
        cells = layout.columns(row, len(buttons), self.m.gap)
        px = self.common_px([(label, self.label_box(cell)) for cell, (label, _, _)
                             in zip(cells, buttons, strict=True)],
                            size="heading", role="ui_bold", max_lines=2, min_size="small")
        for cell, (label, action, style) in zip(cells, buttons, strict=True):
            self.button(cell, label, action, style=style, px=px)
        return rest

    def button_column(self, area, buttons):
        """``buttons`` one above the other down the right of ``area`` (landscape: the words
        keep the full height); returns the rest of ``area``."""
        gap = self.m.gap
        column = pygame.Rect(area.right - round(self.m.target * 2.4), area.top,
                             round(self.m.target * 2.4), area.height)
        cells = layout.grid(column, len(buttons), 1, gap, max_cell_h=round(self.m.target * 1.3))
        px = self.common_px([(label, self.label_box(cell)) for cell, (label, _, _)
                             in zip(cells, buttons, strict=True)],
                            size="heading", role="ui_bold", max_lines=2, min_size="small")
        for cell, (label, action, style) in zip(cells, buttons, strict=True):
            self.button(cell, label, action, style=style, px=px)
        return pygame.Rect(area.left, area.top, column.left - area.left - 2 * gap, area.height)

    # --- the top of every screen ----------------------------------------------------------------

    def _is_banner(self):
        return self.view.card_present and self.view.screen not in CARD_SCREENS

    def _header_text(self, box, max_lines):
        if self._is_banner():
            text, colour = wording.TITLES[Screen.TAKE_CARD][self.lang][0], theme.ON_BANNER
            if max_lines == 1:
                icon = pygame.Rect(box.left, box.top, box.height * 3 // 2, box.height)
                _card_icon(self.surface, icon.inflate(-4, -8))
                box = pygame.Rect(icon.right + self.m.gap, box.top,
                                  box.right - icon.right - self.m.gap, box.height)
        else:
            name = self.settings.name_th if self.lang == "th" else self.settings.name_en
            text, colour = name or self.settings.name_th, theme.ON_HEADER
        self.text(text, box, size="body", role="ui_bold", colour=colour, align="left",
                  max_lines=max_lines, min_size="small")

    def _title_h(self, title, width, size, body, reserve):
        """Height for ``title`` wrapped at ``size`` (at most 3 lines); less if ``reserve`` asks."""
        font = self.fonts.for_text("ui_bold", self.m.font_px(size), title or "-")
        lines = min(3, len(wrap(font, title, width))) if title else 1
        return min(font.get_linesize() * lines,
                   max(self.line_h("small"), body.height - reserve - self.m.gap))

    def top(self, *, back=False, reserve=0, title=None, colour=theme.INK, size="title"):
        """The header (or card banner), Back and language, and the screen's title.

        Landscape: a slim header, then [Back] title [language] in one row. Portrait has no width
        for that: [Back] header [language] share the top bar and the title goes under it.
        ``reserve`` is the height the content below must keep (the title gives way); ``title``
        replaces the screen's own ("" leaves its box empty, kept in ``title_box``). Returns the
        content area.
        """
        m, gap = self.m, self.m.gap
        if title is None:
            title = wording.TITLES[self.view.screen][self.lang][0]
        language = self.view.screen in LANGUAGE_SCREENS
        nav = [(wording.BUTTONS["back"][self.lang], flow.Back())] if back else []
        nav_w = round(m.target * (1.25 if m.is_portrait else 1.5))
        fill = theme.BANNER if self._is_banner() else theme.HEADER
        if m.is_portrait and (back or language):
            bar = pygame.Rect(0, 0, m.width, m.target)
            pygame.draw.rect(self.surface, fill, bar)
            left, right = m.margin, m.width - m.margin
            if back:
                self._nav_button(pygame.Rect(0, 0, nav_w, m.target), *nav[0], on_dark=True)
                left = nav_w + gap
            if language:
                self._language(pygame.Rect(m.width - nav_w, 0, nav_w, m.target), on_dark=True)
                right = m.width - nav_w - gap
            self._header_text(pygame.Rect(left, gap, right - left, m.target - 2 * gap), 2)
            self.scene.header = bar
            body = layout.below(m, bar.bottom)
            title_box, content = layout.take_top(
                body, self._title_h(title, body.width, size, body, reserve), gap=gap)
        else:
            header = pygame.Rect(0, 0, m.width, self.line_h("body", "ui_bold") + gap // 2)
            pygame.draw.rect(self.surface, fill, header)
            self._header_text(header.inflate(-2 * m.margin, -gap // 2), 1)
            self.scene.header = header
            body = layout.below(m, header.bottom)
            if back or language:
                row, content = layout.take_top(body, m.target, gap=gap)
                title_box = pygame.Rect(row)
                if back:
                    self._nav_button(pygame.Rect(row.left, row.top, nav_w, row.height), *nav[0],
                                     on_dark=False)
                    title_box.left += nav_w + gap
                    title_box.width -= nav_w + gap
                if language:
                    self._language(pygame.Rect(row.right - nav_w, row.top, nav_w, row.height),
                                   on_dark=False)
                    title_box.width -= nav_w + gap
            else:
                title_box, content = layout.take_top(
                    body, self._title_h(title, body.width, size, body, reserve), gap=gap)
        self.title_box = title_box
        self.text(title, title_box, size=size, role="ui_bold", colour=colour, max_lines=3,
                  min_size="small" if reserve else "body")
        return content

    def _language(self, rect, *, on_dark):
        self._nav_button(rect, wording.BUTTONS["language"][self.lang], flow.LanguageToggled(),
                         on_dark=on_dark)

    def subtitle(self, area, *, lines=2, colour=theme.MUTED, size="body", **kw):
        """The title's second line (formatted with ``kw``) at the top of ``area``."""
        text = wording.TITLES[self.view.screen][self.lang][1].format(**kw)
        box, rest = layout.take_top(area, self.line_h(size, lines=lines), gap=self.m.gap)
        self.text(text, box, size=size, colour=colour, max_lines=lines, min_size="small")
        return rest

    # --- choices --------------------------------------------------------------------------------

    def choice_grid(self, area, choices, *, min_w_targets=2.0, cols=None):
        """[(label, action, picture)] as a grid of big buttons filling ``area``; ``picture`` is
        None or ``draw(surface, rect)``. Every label in the grid gets the same size."""
        gap, t = self.m.gap, self.m.target
        cols = cols or (layout.best_columns(area, len(choices), gap, t * min_w_targets, t)
                        or layout.best_columns(area, len(choices), gap, t, t) or len(choices))
        pictured = any(picture for _, _, picture in choices)
        max_h = round(t * (2.6 if pictured else 1.6))
        self.choices(layout.grid(area, len(choices), cols, gap, max_cell_h=max_h), choices)

    def choices(self, cells, choices):
        """Draw [(label, action, picture)] into ``cells``, every label at the same size."""
        gap = self.m.gap
        boxes = []
        for cell, (_, _, picture) in zip(cells, choices, strict=True):
            inner = self.label_box(cell)
            if not picture:
                boxes.append((inner, None))
            elif inner.width < inner.height * 2:
                label_h = min(self.line_h("small", lines=3),
                              max(inner.height // 2, self.line_h("small", lines=2)))
                label, art = layout.take_bottom(inner, label_h, gap=gap // 2)
                boxes.append((label, art))
            else:
                art = pygame.Rect(inner.left, inner.top, min(inner.height * 4 // 3,
                                                             inner.width // 3), inner.height)
                boxes.append((pygame.Rect(art.right + gap, inner.top,
                                          inner.right - art.right - gap, inner.height), art))
        px = self.common_px([(label, box) for (label, _, _), (box, _)
                             in zip(choices, boxes, strict=True)],
                            size="body", role="ui_bold", max_lines=3, min_size="small")
        for cell, (label, action, picture), (box, art) in zip(cells, choices, boxes,
                                                               strict=True):
            self._frame(cell, "plain")
            if picture:
                picture(self.surface, art)
            self.text(label, box, role="ui_bold", max_lines=3, px=px)
            self.scene.buttons.append(Button(pygame.Rect(cell), action, label))


# --- pictures ---------------------------------------------------------------------------------

#: One slow in-and-out of the idle card every this many seconds: calm, but it draws the eye.
SLOT_CYCLE_S = 2.5
#: Steps per cycle: the picture is redrawn only when the step changes (not every frame).
SLOT_STEPS = 40


def _slot(c, rect, *, taking=False, moving=True):
    """This kiosk's card slot (display.card_slot, display.chip_facing) in ``rect``: the card
    sliding gently into it, or out of it when ``taking``; still (card in) when not ``moving``.

    The animation holds no reference to the canvas: a scene would otherwise sit in a reference
    cycle, its whole surface waiting for the garbage collector, one per rebuilt screen.
    """
    slot, chip = c.settings.card_slot, c.settings.chip_facing

    def draw(surface, phase):
        return pictures.card_slot(surface, rect, slot, chip, phase, taking=taking)

    if not moving:
        draw(c.surface, 0.5)
        return
    draw(c.surface, 0.0)
    shown = {"step": 0}

    def animate(surface, now):
        step = int(now / SLOT_CYCLE_S * SLOT_STEPS) % SLOT_STEPS
        if step == shown["step"]:
            return []
        shown["step"] = step
        return [draw(surface, step / SLOT_STEPS)]

    c.scene.animate = animate


def _card_icon(surface, box):
    """A small ID card for the reminder banner."""
    w = min(box.width, round(box.height * 1.58))
    card = pygame.Rect(0, 0, w, round(w / 1.58))
    card.center = box.center
    pygame.draw.rect(surface, theme.SURFACE, card, border_radius=max(2, w // 12))
    chip = pygame.Rect(card.left + w // 6, card.top + card.height // 3, w // 5, card.height // 3)
    pygame.draw.rect(surface, (212, 175, 55), chip)


def _document(kind):
    """A drawing of the photocopy answer's document(s): the ID card, the blue house book."""
    def both(surface, rect):
        left, right = layout.columns(rect, 2, max(2, rect.width // 20))
        pictures.id_card(surface, left)
        pictures.house_book(surface, right)

    return {"id_card": pictures.id_card, "house_registration": pictures.house_book,
            "both": both}.get(kind)


# --- the screens ------------------------------------------------------------------------------


def _split(c, area, share=None):
    """(picture, words): side by side in landscape, stacked in portrait. Idle and reading share
    the default, so their slot pictures are one size (drawn once, not twice)."""
    share = share or (0.35 if c.m.is_portrait else 0.42)
    if c.m.is_portrait:
        return layout.take_top(area, round(area.height * share), gap=c.m.gap)
    picture = pygame.Rect(area.left, area.top, round(area.width * share), area.height)
    words = pygame.Rect(picture.right + c.m.gap, area.top,
                        area.right - picture.right - c.m.gap, area.height)
    return picture, words


def _idle(c):
    # The slot picture takes a full-height column (landscape) or the top third (portrait);
    # the words, the privacy notice and "rate without a card" share the rest.
    title, subtitle = wording.TITLES[Screen.IDLE][c.lang]
    area = c.top(title="")
    head, under = layout.take_top(c.title_box, c.line_h("title", "ui_bold"))
    if c.fonts.for_text("ui_bold", c.m.font_px("title"), title).size(title)[0] > head.width:
        head, under = c.title_box, None  # a title of two lines leaves no room in its row
    c.text(title, head, size="title", role="ui_bold", max_lines=3, min_size="body")
    sub_lines = 1
    if not (under and under.height >= c.line_h("small")) and c.m.is_portrait:
        # Stacked, the picture would come between the title and its subtitle: keep them together.
        sub_lines = 2
        under, area = layout.take_top(area, c.line_h("body", lines=2), gap=c.m.gap)
    picture, words = _split(c, area)
    if c.settings.allow_rating_without_card:
        words = c.button_row(words, [(wording.BUTTONS["without_card"][c.lang],
                                      flow.StartedWithoutCard(), "plain")])
    privacy, words = layout.take_bottom(words, c.line_h("small", lines=2), gap=c.m.gap)
    c.text(wording.PRIVACY[c.lang], privacy, size="small", colour=theme.MUTED, max_lines=2,
           valign="bottom")
    _slot(c, picture)
    if under and under.height >= c.line_h("small"):
        c.text(subtitle, under, size="body", colour=theme.MUTED, max_lines=sub_lines,
               min_size="small")
    else:
        c.text(subtitle, words, size="heading", max_lines=4, min_size="small")


def _reading(c):
    picture, words = _split(c, c.top())
    words = c.subtitle(words, size="heading", lines=3)
    _slot(c, picture, moving=False)
    dots = pygame.Rect(0, 0, min(words.width, c.m.target * 3), min(words.height, c.m.target))
    dots.center = words.center
    radius = max(6, dots.height // 5)
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


def _card_back(c):
    """Return-card and take-card: one big request and the card coming out of the slot (a
    forgotten card's asks a passer-by to hand it to staff)."""
    forgotten = wording.FORGOTTEN_CARD[c.lang] if c.view.card_forgotten else None
    area = c.top(size="display", title=forgotten[0] if forgotten else None)
    if c.m.is_portrait:
        words, picture = layout.take_top(area, c.line_h("heading", lines=3), gap=c.m.gap)
    else:
        picture, words = _split(c, area, 0.5)
    request = forgotten[1] if forgotten else wording.TITLES[c.view.screen][c.lang][1]
    c.text(request, words, size="heading", max_lines=3,
           min_size="body")
    _slot(c, picture, taking=True)


def _steps(c, area, steps):
    """Numbered steps, one a line, each beside a round number."""
    gap = c.m.gap
    row_h = min(area.height // max(1, len(steps)), c.line_h("heading", lines=2))
    top = area.top + (area.height - row_h * len(steps)) // 2
    rows = [pygame.Rect(area.left, top + i * row_h, area.width, row_h) for i in range(len(steps))]
    diameter = min(row_h - gap // 2, c.line_h("heading"))
    boxes = [pygame.Rect(r.left + diameter + gap, r.top, r.width - diameter - gap, r.height)
             for r in rows]
    px = c.common_px(list(zip(steps, boxes, strict=True)), size="heading", max_lines=2,
                     min_size="body")
    for number, (row, box, step) in enumerate(zip(rows, boxes, steps, strict=True), start=1):
        centre = (row.left + diameter // 2, row.centery)
        pygame.gfxdraw.filled_circle(c.surface, *centre, diameter // 2, theme.PRIMARY)
        pygame.gfxdraw.aacircle(c.surface, *centre, diameter // 2, theme.PRIMARY)
        digit = pygame.Rect(0, 0, diameter, diameter)
        digit.center = centre
        c.text(str(number), digit, role="ui_bold", colour=theme.ON_PRIMARY, px=px, max_lines=1)
        c.text(step, box, align="left", max_lines=2, px=px)


def _card_problem(c):
    problem = c.view.problem if c.view.problem in wording.CARD_PROBLEMS else "unreadable"
    title, steps = wording.CARD_PROBLEMS[problem][c.lang]
    # The title says what happened (the screen's own title is the spoken prompt).
    area = c.top(title=title, colour=theme.ALERT)
    buttons = [(wording.BUTTONS["try_again"][c.lang], flow.Dismissed(), "primary")]
    if c.settings.allow_rating_without_card:
        buttons.append((wording.BUTTONS["without_card"][c.lang], flow.StartedWithoutCard(),
                        "plain"))
    area = (c.button_row if c.m.is_portrait else c.button_column)(area, buttons)
    _steps(c, area, steps)


def _already_rated(c):
    area = c.top()
    area = c.button_row(area, [(wording.BUTTONS["ok"][c.lang], flow.Dismissed(), "primary")])
    window = wording.window_text(c.settings.repeat_window_min, c.lang)
    text = wording.TITLES[Screen.ALREADY_RATED][c.lang][1].format(window=window)
    c.text(text, area, size="heading", max_lines=4, min_size="body")


def _service_label(c, service):
    return service.name_th if c.lang == "th" else (service.name_en or service.name_th)


def _choose_service(c):
    area = c.top(back=True)
    items = [(_service_label(c, s), flow.ServiceChosen(s.id), None)
             for s in c.settings.services]
    items.append((wording.OTHER_SERVICE[c.lang], flow.ServiceChosen(visit.OTHER_SERVICE), None))
    gap, t = c.m.gap, c.m.target
    fits = layout.capacity(area, gap, t, t)
    if c.settings.choice_buttons:  # what the buttons choose is what the page shows
        fits = min(fits, c.settings.choice_buttons)
    if len(items) > fits:
        per_page = max(1, fits - 1)
        pages = math.ceil(len(items) / per_page)
        start = (c.view.page % pages) * per_page
        more = f"{wording.BUTTONS['more'][c.lang]} ({c.view.page % pages + 1}/{pages})"
        items = items[start:start + per_page] + [(more, PageTurned(), None)]
    c.choice_grid(area, items)


def _copy_check(c):
    area = c.top(back=True)
    choices = [(wording.COPY_ANSWERS[a][c.lang], flow.CopyAnswered(a), _document(a))
               for a in flow.COPY_ANSWERS]
    if c.m.is_portrait:
        c.choice_grid(area, choices, min_w_targets=1.2)
        return
    # Landscape: one row in the answers' order; the answers without a document are one
    # target wide, and the documents share the rest, each over its words.
    gap, t = c.m.gap, c.m.target
    plain = sum(1 for *_, picture in choices if not picture)
    free = area.width - (len(choices) - 1) * gap
    narrow = round(t * 1.4)
    if (free - plain * narrow) / (len(choices) - plain) < narrow:
        narrow = t
    wide = (free - plain * narrow) / (len(choices) - plain)
    height = min(area.height, round(t * 2.6))
    cells, left = [], area.left
    for *_, picture in choices:
        width = math.floor(wide) if picture else narrow
        cells.append(pygame.Rect(round(left), area.centery - height // 2, width, height))
        left += width + gap
    c.choices(cells, choices)


def _rating(c):
    gap, t = c.m.gap, c.m.target
    count = len(flow.RATINGS)
    tight = max(2, gap // 3)
    # Portrait: one column, a 2 cm row each; the title gives way to it. Never a 3 + 2 grid.
    column = c.m.is_portrait
    area = c.top(back=True, reserve=count * t + (count - 1) * tight if column else 0)
    if column:
        cells = layout.grid(area, count, 1, tight, max_cell_h=t)
    else:
        label_h = c.line_h("body", lines=2)
        cells = layout.grid(area, count, count, gap, max_cell_h=t * 2 + label_h)
    parts = []
    for cell in cells:
        inner = cell.inflate(-gap, -tight * 2 if column else -gap)
        if column:
            face = pygame.Rect(inner.left, inner.top, inner.height, inner.height)
            label = pygame.Rect(face.right + gap, inner.top, inner.right - face.right - gap,
                                inner.height)
        else:
            label, face = layout.take_bottom(inner, min(c.line_h("body", lines=2),
                                                        inner.height // 2))
        parts.append((face, label))
    labels = [wording.RATINGS[r][c.lang] for r in flow.RATINGS]
    px = c.common_px([(text, label) for text, (_, label) in zip(labels, parts, strict=True)],
                     size="body", role="ui_bold", max_lines=2, min_size="small")
    for rating, cell, text, (face, label) in zip(flow.RATINGS, cells, labels, parts,
                                                 strict=True):
        c._frame(cell, "plain")
        radius = max(8, min(face.width, face.height) // 2 - 2)
        pictures.face(c.surface, face.center, radius, rating)
        c.text(text, label, role="ui_bold", max_lines=2, px=px,
               align="left" if column else "center")
        c.scene.buttons.append(Button(pygame.Rect(cell), flow.RatingChosen(rating), text))


def _reason(c):
    area = c.top(back=True)
    # Skip is not a reason: it sits apart, below, in the outlined style of Back.
    skip, area = layout.take_bottom(area, c.m.target, gap=c.m.gap)
    skip.width = min(skip.width, round(c.m.target * 3.2))
    skip.right = area.right
    c.choice_grid(area, [(wording.REASONS[r][c.lang], flow.ReasonChosen(r), None)
                         for r in OFFERED_REASONS], min_w_targets=1.6)
    c.button(skip, wording.BUTTONS["skip"][c.lang], flow.ReasonChosen(None), style="nav")


def _answer_rows(c):
    service_id, copy_answer, rating, reason = c.view.answers or (None, None, None, None)
    names = {s.id: _service_label(c, s) for s in c.settings.services}
    names[visit.OTHER_SERVICE] = wording.OTHER_SERVICE[c.lang]
    rows = [("service", names.get(service_id, service_id)),
            ("copy", wording.COPY_ANSWERS[copy_answer][c.lang] if copy_answer else None),
            ("rating", wording.RATINGS[rating][c.lang] if rating else None)]
    if reason:
        rows.append(("reason", wording.REASONS[reason][c.lang]))
    return [(wording.ANSWER_NAMES[key][c.lang], value, rating if key == "rating" else None)
            for key, value in rows if value]


def _confirm(c):
    gap = c.m.gap
    area = c.top()
    change = (wording.BUTTONS["change"][c.lang], flow.ChangeAnswer(), "plain")
    send = (wording.BUTTONS["send"][c.lang], flow.Dismissed(), "primary")
    # The answers on the left; "send" (the main action, physical button 1) above "change".
    area = (c.button_row if c.m.is_portrait else c.button_column)(area, [send, change])
    # Portrait has no width beside the words for a bar worth seeing: it goes under them.
    countdown_h = c.line_h("body") + (2 * gap if c.m.is_portrait else 0)
    countdown, area = layout.take_bottom(area, countdown_h, gap=gap)
    rows = _answer_rows(c)
    if rows:
        pygame.draw.rect(c.surface, theme.SURFACE, area, border_radius=gap)
        table = area.inflate(-2 * gap, -gap)
        row_h = min(table.height // len(rows), c.line_h("heading", lines=2))
        table.top += (table.height - row_h * len(rows)) // 2
        name_w = round(table.width * (0.36 if c.m.is_portrait else 0.3))
        names, values = [], []
        for i, (name, value, rating) in enumerate(rows):
            row = pygame.Rect(table.left, table.top + i * row_h, table.width, row_h)
            names.append((name, pygame.Rect(row.left, row.top, name_w, row.height)))
            value_box = pygame.Rect(row.left + name_w + gap, row.top,
                                    row.width - name_w - gap, row.height)
            if rating:
                radius = min(row.height, c.line_h("heading")) // 2 - 2
                pictures.face(c.surface, (value_box.left + radius, row.centery), radius,
                              rating)
                value_box.left += 2 * radius + gap
                value_box.width -= 2 * radius + gap
            values.append((value, value_box))
        # One size for every name and one for every value, as a table reads.
        name_style = {"size": "body", "align": "left", "max_lines": 2, "min_size": "small"}
        value_style = {"size": "heading", "role": "ui_bold", "align": "left", "max_lines": 2,
                       "min_size": "small"}
        for items, style, colour in ((names, name_style, theme.MUTED),
                                     (values, value_style, theme.INK)):
            px = c.common_px(items, **style)
            for text, box in items:
                c.text(text, box, colour=colour, px=px, **style)
    _countdown(c, countdown)


def _countdown(c, box):
    """"Sending in 6 s" and a shrinking bar: the seconds left before the answers are sent."""
    total = max(0.1, c.settings.confirm_s)
    deadline = c.view.deadline
    px = c.m.font_px("body")
    sample = wording.SENDING_IN[c.lang].format(s=88)
    if c.m.is_portrait:
        words = pygame.Rect(box.left, box.top, box.width, c.line_h("body"))
        bar = pygame.Rect(box.left, box.bottom - c.m.gap, box.width, c.m.gap)
    else:
        words_w = min(box.width - box.width // 6,
                      c.fonts.for_text("ui", px, sample).size(sample)[0])
        words = pygame.Rect(box.left, box.top, words_w, box.height)
        bar = pygame.Rect(words.right + c.m.gap, box.centery - c.m.gap // 2,
                          box.right - words.right - c.m.gap, c.m.gap)
    fonts, lang = c.fonts, c.lang  # not the canvas: see _slot
    shown = {"key": None}

    def animate(surface, now):
        left = total if deadline is None or now is None else min(total, max(0.0,
                                                                            deadline - now))
        key = (math.ceil(left), round(bar.width * left / total))
        if key == shown["key"]:
            return []
        shown["key"] = key
        surface.fill(theme.BACKGROUND, box)
        block = layout_block(fonts, "ui", wording.SENDING_IN[lang].format(s=key[0]), words,
                             max_px=px, min_px=px, colour=theme.MUTED, align="left",
                             max_lines=1)
        draw_block(surface, block)
        pygame.draw.rect(surface, theme.BORDER, bar, border_radius=bar.height // 2)
        pygame.draw.rect(surface, theme.PRIMARY, (bar.left, bar.top, key[1], bar.height),
                         border_radius=bar.height // 2)
        return [box]

    animate(c.surface, None)
    text = wording.SENDING_IN[c.lang].format(s=math.ceil(total))
    block = c._block(text, words, align="left", max_lines=1, px=px)
    c.scene.texts.append(TextBox(text, block.rect, pygame.Rect(words), block.size))
    c.scene.animate = animate


def _thank_you(c):
    """The thanks, and the code with the address it leads to written under it (QR scams are
    common: a citizen can check the address before trusting the code)."""
    gap = c.m.gap
    host = urlsplit(c.settings.portal_url).hostname or ""
    address_h = c.line_h("heading", "ui_bold")
    caption_h = c.line_h("body", lines=3)
    done = [(wording.BUTTONS["done"][c.lang], flow.Dismissed(), "primary")]
    if c.m.is_portrait:
        area = c.button_row(c.top(), done)
        room = area.height - address_h - caption_h - 2 * gap
        side = max(c.m.qr_min, min(area.width, room) * 9 // 10)
        code_box, rest = layout.take_top(area, side, gap=gap)
        address, caption = layout.take_top(rest, address_h, gap=gap)
    else:
        area = c.top(title="")
        whole = c.title_box.union(area)
        column = pygame.Rect(whole.left, whole.top, round(whole.width * 0.4), whole.height)
        side = max(c.m.qr_min, min(column.width, column.height - address_h - gap) * 9 // 10)
        # The code with its address right under it, the pair centred in the column.
        pair = pygame.Rect(column.left, column.centery - (side + address_h) // 2,
                           column.width, side + address_h)
        code_box, address = layout.take_top(pair, side)
        words = pygame.Rect(column.right + 2 * gap, whole.top,
                            whole.right - column.right - 2 * gap, whole.height)
        words = c.button_row(words, done)
        title, caption = layout.take_top(words, round(words.height * 0.45), gap=gap)
        c.text(wording.TITLES[Screen.THANK_YOU][c.lang][0], title, size="title",
               role="ui_bold", max_lines=3, min_size="body", valign="bottom")
    code = qr.render(c.view.portal_url, c.m.qr_min, side) if c.view.portal_url else None
    if code:
        place = code.get_rect(center=code_box.center)
        c.surface.blit(code, place)
        c.scene.qr_rect = place
    c.text(wording.PORTAL_ADDRESS[c.lang].format(host=host), address, size="heading",
           role="ui_bold", max_lines=1, min_size="small")
    c.text(wording.TITLES[Screen.THANK_YOU][c.lang][1], caption, size="heading", max_lines=4,
           min_size="body", valign="top")


def _out_of_service(c):
    """Thai first with English beside it (whatever the language), the technician's line apart."""
    gap = c.m.gap
    area = c.top(title="")
    note, area = layout.take_bottom(area, c.line_h("small", lines=3) + gap, gap=gap)
    pygame.draw.rect(c.surface, theme.SURFACE, note, border_radius=gap)
    label, reason = layout.take_top(note.inflate(-gap, -gap // 2), c.line_h("small"))
    # Each language's label on its own, under its column: no English inside the Thai.
    for language, box in zip(("th", "en"), layout.columns(label, 2, 2 * gap), strict=True):
        c.text(wording.TECHNICIAN[language], box, size="small", colour=theme.MUTED,
               align="left", max_lines=1)
    c.text(c.view.out_of_service or "-", reason, size="small", colour=theme.MUTED,
           align="left", valign="top", max_lines=2)
    whole = c.title_box.union(area)
    thai, english = (layout.take_top(whole, whole.height // 2, gap=gap) if c.m.is_portrait
                     else layout.columns(whole, 2, 2 * gap))
    for language, box in (("th", thai), ("en", english)):
        title, line = wording.suspension_titles(c.view.out_of_service)[language]
        head, rest = layout.take_top(box, round(box.height * 0.6), gap=gap)
        c.text(title, head, size="title", role="ui_bold", valign="bottom", max_lines=3,
               min_size="body")
        c.text(line, rest, size="heading", colour=theme.MUTED, valign="top", max_lines=2,
               min_size="body")


#: Screen -> drawing; the display has exactly one drawing per flow Screen.
SCREENS = {
    Screen.IDLE: _idle,
    Screen.READING: _reading,
    Screen.RETURN_CARD: _card_back,
    Screen.CARD_PROBLEM: _card_problem,
    Screen.ALREADY_RATED: _already_rated,
    Screen.CHOOSE_SERVICE: _choose_service,
    Screen.COPY_CHECK: _copy_check,
    Screen.RATING: _rating,
    Screen.REASON: _reason,
    Screen.CONFIRM: _confirm,
    Screen.THANK_YOU: _thank_you,
    Screen.TAKE_CARD: _card_back,
    Screen.OUT_OF_SERVICE: _out_of_service,
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
        return canvas.finish()
