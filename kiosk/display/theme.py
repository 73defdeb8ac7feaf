"""The look of the kiosk: one calm palette, the Thai fonts, and sizes taken from the panel.

Pure (standard library only), so the contrast and size rules can be checked without a screen.
Sizes come from the panel's physical diagonal, not from pixels: a 2 cm touch target is 2 cm on
a 7" 800×480 panel and on a 10" 1280×800 one.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from kiosk.errors import DisplayError

FONT_DIR = Path("/usr/share/fonts/opentype/tlwg")
#: role -> (file, Debian package that ships it). One family for every role: Loma reads well at
#: small sizes, and its Latin letters are the only Latin typeface on the screens (a second family
#: for titles brought a second, different Latin alphabet with it).
FONTS = {
    "ui": ("Loma.otf", "fonts-tlwg-loma-otf"),
    "ui_bold": ("Loma-Bold.otf", "fonts-tlwg-loma-otf"),
}

# Navy and warm paper: the colours of Thai government forms, easy on elderly eyes.
BACKGROUND = (246, 244, 239)
SURFACE = (255, 255, 255)
INK = (27, 36, 48)
MUTED = (74, 85, 101)
PRIMARY = (24, 62, 104)
ON_PRIMARY = (255, 255, 255)
HEADER = (19, 48, 84)
ON_HEADER = (255, 255, 255)
BORDER = (150, 160, 175)
ALERT = (160, 40, 30)
#: The "please take your card" banner: white on a deep amber-red, unlike anything else on screen.
BANNER = (158, 52, 0)
ON_BANNER = (255, 255, 255)
BLACK = (0, 0, 0)

#: Every pair of (text colour, background colour) the screens draw, by name, for the contrast test.
TEXT_PAIRS = {
    "body": (INK, BACKGROUND),
    "muted": (MUTED, BACKGROUND),
    "alert": (ALERT, BACKGROUND),
    "button": (INK, SURFACE),
    "primary_button": (ON_PRIMARY, PRIMARY),
    "header": (ON_HEADER, HEADER),
    "banner": (ON_BANNER, BANNER),
    "nav_button": (PRIMARY, BACKGROUND),
}

#: WCAG 2.x AA for normal text.
MIN_CONTRAST = 4.5
#: A fingertip is about 1.6–2 cm wide; 2 cm plus 5 % for parallax on resistive panels.
TARGET_CM = 2.1
#: A phone camera at arm's length needs the QR code at least this size.
QR_MIN_CM = 3.0
#: No text smaller than this em at the panel's physical size (about 12 pt: large print).
MIN_TEXT_MM = 4.0
#: Pixels per centimetre of the official 7" 800×480 panel, where the type scale was drawn.
REFERENCE_PX_PER_CM = math.hypot(800, 480) / 7.0 / 2.54
#: The coloured header strip holds one line of text; the rest of the height is the screen's.
HEADER_MAX_SHARE = 0.12


def font_path(role):
    """The font file for ``role``; a missing file names the apt package that provides it."""
    name, package = FONTS[role]
    path = FONT_DIR / name
    if not path.is_file():
        raise DisplayError(f"font {path} is missing: install it with "
                           f"'apt install {package}' (Thai text needs the TLWG fonts)")
    return path


def relative_luminance(rgb):
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(fg, bg):
    """WCAG contrast ratio of two sRGB colours, 1.0 … 21.0."""
    a, b = sorted((relative_luminance(fg), relative_luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


@dataclass(frozen=True)
class Metrics:
    """Pixel sizes for one panel, derived from its resolution and physical diagonal."""

    width: int
    height: int
    diagonal_in: float

    @property
    def px_per_cm(self):
        return math.hypot(self.width, self.height) / self.diagonal_in / 2.54

    @property
    def target(self):
        """Smallest side of any touch target, in pixels."""
        return math.ceil(TARGET_CM * self.px_per_cm)

    @property
    def min_text_px(self):
        """The smallest em any text may have on this panel."""
        return math.ceil(MIN_TEXT_MM / 10 * self.px_per_cm)

    @property
    def qr_min(self):
        return math.ceil(QR_MIN_CM * self.px_per_cm)

    @property
    def is_portrait(self):
        return self.height > self.width

    @property
    def unit(self):
        """Type and spacing scale: 1.0 on the official 7" 800×480 panel, and the same physical
        size on any other, like the touch targets (a 10" panel gets room, not bigger letters
        that would no longer fit its 2 cm buttons)."""
        return self.px_per_cm / REFERENCE_PX_PER_CM

    @property
    def gap(self):
        return max(8, round(12 * self.unit))

    @property
    def margin(self):
        return max(12, round(20 * self.unit))

    def font_px(self, size):
        """``size`` is ``display``, ``title``, ``heading``, ``body`` or ``small``; large type for
        older eyes, and never under :data:`MIN_TEXT_MM` on this panel."""
        base = {"display": 54, "title": 42, "heading": 34, "body": 28, "small": 22}[size]
        return max(self.min_text_px, round(base * self.unit))
