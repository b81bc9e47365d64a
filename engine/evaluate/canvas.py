"""Evaluate stage: the summary sheet's drawing kit: its palette, fonts, text and dashed lines.

Shared by the page (sheet.py: header, cards, sample rows) and its plots (plots.py), so both draw in
one style. cv2 only: Hershey fonts draw ASCII alone, so text is reduced to ASCII before it is drawn.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 1600  # the sheet's width: readable whole on a laptop screen
MARGIN = 24
FONT = cv2.FONT_HERSHEY_SIMPLEX
BOLD = cv2.FONT_HERSHEY_DUPLEX
BACKGROUND = (26, 24, 22)
PANEL = (40, 37, 34)
GRID = (62, 58, 54)
AXIS = (140, 136, 130)
TEXT = (236, 236, 236)
DIM = (160, 156, 150)
RESULT = (60, 160, 255)  # orange: the swapped result
DESTINATION = (235, 170, 70)  # blue: the untouched destination
SOURCE = (190, 110, 250)  # pink: the source identity
GREEN, AMBER, RED = (110, 200, 90), (40, 190, 245), (80, 80, 235)
EXTRA = (120, 220, 230)  # a third series (pitch)


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5,
             colour=TEXT, thickness: int = 1, max_width: int = 0, font: int = FONT) -> int:
    """Anti-aliased text, elided with "..." to fit max_width; returns the width drawn."""
    text = str(text).encode("ascii", "replace").decode("ascii")  # Hershey fonts draw ASCII only
    if max_width > 0 and text_width(text, scale, thickness, font) > max_width:
        while len(text) > 1 and text_width(text + "...", scale, thickness, font) > max_width:
            text = text[:-1]
        text = text.rstrip() + "..."
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), font, scale, colour, thickness, cv2.LINE_AA)
    return text_width(text, scale, thickness, font)


def text_width(text: str, scale: float, thickness: int = 1, font: int = FONT) -> int:
    """The width in pixels `text` takes when drawn."""
    return cv2.getTextSize(text, font, scale, thickness)[0][0]


def dashed_line(image: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], colour, dash: int = 6) -> None:
    """A dashed 1 px line (cv2 has none): reference levels and the sample marks."""
    (x0, y0), (x1, y1) = p0, p1
    length = max(abs(x1 - x0), abs(y1 - y0))
    for s in range(0, length, 2 * dash):
        a, b = s / length, min(s + dash, length) / length
        cv2.line(image, (round(x0 + a * (x1 - x0)), round(y0 + a * (y1 - y0))),
                 (round(x0 + b * (x1 - x0)), round(y0 + b * (y1 - y0))), colour, 1, cv2.LINE_AA)
