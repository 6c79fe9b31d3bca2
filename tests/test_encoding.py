"""Encoding and segment counts of SPEC 10.3, at every boundary."""

from __future__ import annotations

import pytest

from sms.encoding import GSM_7, UCS_2, encode

EXTENSION = "^{}[]~\\|€"


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (1600, 11)],
)
def test_gsm_7_takes_160_in_one_segment_then_153_per_segment(length: int, segments: int) -> None:
    encoded = encode("a" * length)

    assert (encoded.encoding, encoded.units, encoded.segments) == (GSM_7, length, segments)


@pytest.mark.parametrize("char", list(EXTENSION))
def test_each_extension_character_counts_two(char: str) -> None:
    assert encode(char).encoding == GSM_7
    assert encode(char).units == 2
    assert encode("a" * 158 + char).segments == 1  # 160 septets
    assert encode("a" * 159 + char).segments == 2  # 161 septets


def test_extension_characters_count_two_across_segment_boundaries() -> None:
    assert encode("€" * 80).segments == 1  # 160 septets
    assert encode("€" * 81).segments == 2  # 162
    assert encode("{" * 153).segments == 2  # 306
    assert encode("{" * 154).segments == 3  # 308


def test_the_whole_basic_table_is_gsm_7() -> None:
    text = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )

    assert encode(text).encoding == GSM_7
    assert encode(text).units == len(text)


@pytest.mark.parametrize("char", ["ç", "á", "ê", "`", "ő", "你", "—", "\u2019", "\t"])
def test_one_character_outside_gsm_7_makes_the_text_ucs_2(char: str) -> None:
    assert encode("Your order has shipped " + char).encoding == UCS_2


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (69, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs_2_takes_70_in_one_segment_then_67_per_segment(length: int, segments: int) -> None:
    encoded = encode("ç" * length)

    assert (encoded.encoding, encoded.units, encoded.segments) == (UCS_2, length, segments)


def test_ucs_2_counts_utf_16_code_units_so_an_emoji_counts_two() -> None:
    assert encode("😀").units == 2
    assert encode("😀" * 35).segments == 1  # 70 code units
    assert encode("😀" * 35 + "a").segments == 2  # 71
    assert encode("😀" * 67).segments == 2  # 134
    assert encode("😀" * 67 + "a").segments == 3  # 135


def test_extension_characters_in_a_ucs_2_text_count_one() -> None:
    assert encode("€ç").units == 2
    assert encode("€" * 69 + "ç").segments == 1


def test_a_1600_character_ucs_2_text_of_emoji_takes_48_segments() -> None:
    assert encode("😀" * 1600).segments == 48  # 3200 code units / 67
