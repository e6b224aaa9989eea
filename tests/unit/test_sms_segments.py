import pytest

from app.delivery.sms import count_segments, inbound_keyword, to_e164


@pytest.mark.parametrize(
    ("text", "encoding", "units", "count"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),
        ("a" * 70 + "é", "GSM-7", 71, 1),  # é is in the GSM 03.38 basic set
        ("ç" * 70, "UCS-2", 70, 1),  # lower-case ç is not (only Ç is)
        ("ç" * 71, "UCS-2", 71, 2),
        ("ç" * 134, "UCS-2", 134, 2),
        ("ç" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 code units
    ],
)
def test_segments_follow_gsm7_160_153_and_ucs2_70_67(text, encoding, units, count):
    segments = count_segments(text)
    assert (segments.encoding, segments.units, segments.count) == (encoding, units, count)


def test_one_emoji_switches_the_whole_message_to_ucs2():
    assert count_segments("Your code is 123456").count == 1
    assert count_segments("Your code is 123456 🎉").encoding == "UCS-2"
    assert count_segments("a" * 100 + "🎉").count == 2


def test_an_escape_pair_is_never_split_across_two_parts():
    # 152 septets then a two-septet "€": it cannot straddle the 153 boundary, so it starts part two.
    assert count_segments("a" * 152 + "€" + "a" * 152).count == 3


def test_a_surrogate_pair_is_never_split_across_two_parts():
    assert count_segments("a" * 66 + "😀" + "a" * 66).count == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+351 912 345 678", "+351912345678"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("912345678", None),  # no country, no default region
        ("+1 555", None),
        ("not a number", None),
    ],
)
def test_numbers_are_normalised_to_e164_or_refused(raw, expected):
    assert to_e164(raw) == expected


def test_default_region_lets_a_national_number_through():
    assert to_e164("912 345 678", "PT") == "+351912345678"


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        (" stop ", "stop"),
        ("Stop.", "stop"),
        ("STOPALL", "stop"),
        ("unsubscribe", "stop"),
        ("CANCEL", "stop"),
        ("end", "stop"),
        ("QUIT", "stop"),
        ("START", "start"),
        ("unstop", "start"),
        ("Help", "help"),
        ("please stop texting me", None),
        ("STOP IT", None),
        ("", None),
    ],
)
def test_only_a_whole_message_keyword_counts(body, keyword):
    assert inbound_keyword(body) == keyword
