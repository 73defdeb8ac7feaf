"""The thank-you QR code: the citizen portal for this service point, with a one-visit token.

The token is fresh randomness (``secrets``), never derived from the visit's id, sequence or time,
and it is not stored anywhere: the portal can tell visits apart without anyone being able to link
a portal session back to a recorded rating. Drawn from the code's module matrix with
pygame.draw (no Pillow on the kiosk), with the 4-module quiet zone scanners need.
"""

import math
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pygame
import qrcode
import qrcode.constants

QUIET_ZONE = 4


def new_token():
    """A random per-visit token: 96 bits, URL-safe."""
    return secrets.token_urlsafe(12)


def portal_url(base, service_point_id, token):
    """``base`` with ``sp`` and ``t`` query parameters added (existing parameters are kept)."""
    parts = urlsplit(base)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("sp", service_point_id),
                                                              ("t", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def matrix(data):
    """The code's modules (True = dark), quiet zone included."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()


def render(data, min_code_px, fit_px=0):
    """A surface of the QR code whose dark-module area is at least ``min_code_px`` wide, and as
    large as fits in ``fit_px`` (quiet zone included) where that is more.

    Modules are whole pixels (a scaled code blurs and scans worse).
    """
    rows = matrix(data)
    code_modules = len(rows) - 2 * QUIET_ZONE
    module = max(1, math.ceil(min_code_px / code_modules), fit_px // len(rows))
    size = len(rows) * module
    surface = pygame.Surface((size, size))
    surface.fill((255, 255, 255))
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                surface.fill((0, 0, 0), (x * module, y * module, module, module))
    return surface
