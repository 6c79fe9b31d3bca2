"""How an SMS text travels: its encoding (GSM-7 or UCS-2) and how many segments it takes.

GSM-7 is the 7-bit alphabet of 3GPP TS 23.038: its basic table, plus an extension table
whose characters are sent as an escape and the character, so they count two. A text with a
single character outside both tables goes as UCS-2, counted in UTF-16 code units (an emoji
outside the Basic Multilingual Plane counts two). A text that fits one segment takes one;
a longer one is split into parts that each carry a header, so fewer characters fit in each:

    encoding  one segment  per segment when split
    GSM-7     160          153
    UCS-2      70           67
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GSM_7 = "GSM-7"
UCS_2 = "UCS-2"

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: an escape and the character, two septets each. (Form feed is in the
# table too, as a page break.)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

_LIMITS = {GSM_7: (160, 153), UCS_2: (70, 67)}


@dataclass(frozen=True)
class Encoded:
    encoding: str
    units: int  # GSM-7 septets, or UTF-16 code units
    segments: int


def encode(text: str) -> Encoded:
    """The encoding a text goes out in, its length in that encoding, and its segments."""
    septets = 0
    for char in text:
        if char in _GSM_BASIC:
            septets += 1
        elif char in _GSM_EXTENSION:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return Encoded(UCS_2, units, _segments(UCS_2, units))
    return Encoded(GSM_7, septets, _segments(GSM_7, septets))


def _segments(encoding: str, units: int) -> int:
    single, part = _LIMITS[encoding]
    return 1 if units <= single else math.ceil(units / part)
