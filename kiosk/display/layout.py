"""Where things go on a panel of any size: header, content, grids of touch targets.

Every function returns pygame Rects inside the rect it was given, never smaller than the touch
target it was asked to respect, so the screens cannot overflow by construction and the tests can
check it on every resolution.
"""

import math

import pygame


def below(metrics, top):
    """The area under a bar ``top`` pixels tall, inside the panel's margins."""
    m, gap = metrics.margin, metrics.gap
    return pygame.Rect(m, top + gap, metrics.width - 2 * m, metrics.height - top - gap - m)


def take_top(rect, height, gap=0):
    """Split ``rect`` into (top part of ``height``, the rest below a ``gap``)."""
    height = min(height, rect.height)
    top = pygame.Rect(rect.left, rect.top, rect.width, height)
    rest = pygame.Rect(rect.left, top.bottom + gap, rect.width, max(0, rect.height - height - gap))
    return top, rest


def take_bottom(rect, height, gap=0):
    height = min(height, rect.height)
    bottom = pygame.Rect(rect.left, rect.bottom - height, rect.width, height)
    rest = pygame.Rect(rect.left, rect.top, rect.width, max(0, rect.height - height - gap))
    return bottom, rest


def columns(rect, count, gap):
    """``count`` equal columns across ``rect``."""
    w = (rect.width - gap * (count - 1)) / count
    return [pygame.Rect(round(rect.left + i * (w + gap)), rect.top, math.floor(w), rect.height)
            for i in range(count)]


def grid(rect, count, cols, gap, *, max_cell_h=None):
    """``count`` cells in rows of ``cols``, filling ``rect`` from the top (rows centred)."""
    rows = math.ceil(count / cols)
    cell_h = (rect.height - gap * (rows - 1)) / rows
    if max_cell_h:
        cell_h = min(cell_h, max_cell_h)
    used = rows * cell_h + gap * (rows - 1)
    top = rect.top + (rect.height - used) / 2
    cells = []
    for i in range(count):
        r, c = divmod(i, cols)
        in_row = min(cols, count - r * cols)
        row_rect = pygame.Rect(rect.left, round(top + r * (cell_h + gap)), rect.width,
                               math.floor(cell_h))
        cell_w = (rect.width - gap * (cols - 1)) / cols
        row_w = in_row * cell_w + gap * (in_row - 1)
        left = rect.left + (rect.width - row_w) / 2
        cells.append(pygame.Rect(round(left + c * (cell_w + gap)), row_rect.top,
                                 math.floor(cell_w), row_rect.height))
    return cells


def best_columns(rect, count, gap, min_w, min_h):
    """Fewest columns (up to ``count``) whose cells stay at least ``min_w`` × ``min_h``; None
    when even the best arrangement cannot hold them (the caller pages)."""
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        cell_w = (rect.width - gap * (cols - 1)) / cols
        cell_h = (rect.height - gap * (rows - 1)) / rows
        if cell_w < min_w:
            return None
        if cell_h >= min_h:
            return cols
    return None


def capacity(rect, gap, min_w, min_h):
    """How many cells of at least ``min_w`` × ``min_h`` fit in ``rect``."""
    cols = max(0, int((rect.width + gap) // (min_w + gap)))
    rows = max(0, int((rect.height + gap) // (min_h + gap)))
    return cols * rows
