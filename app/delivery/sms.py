"""SMS decisions: E.164 numbers, segment counting, inbound keywords. Pure functions.

Segments matter because carriers bill per segment and Twilio caps a message
at 10 of them. A message that fits the GSM 03.38 alphabet uses 7-bit
characters: 160 in one SMS, or 153 per part once it is split (the rest of
each part is the concatenation header). One character outside that alphabet
(an emoji, a curly quote) switches the whole message to UCS-2: 70 UTF-16 code
units alone, 67 per part.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the extension table: an escape plus the character, two septets each.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP"})


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def count_segments(text: str) -> Segments:
    """How many SMS parts ``text`` takes, as a carrier counts them.

    Parts are filled greedily and a character is never split across two parts
    (an escape pair in GSM-7, a surrogate pair in UCS-2), which is why a long
    message can take one part more than ``ceil(units / 153)``.
    """
    if is_gsm7(text):
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        encoding, single, part = "GSM-7", GSM7_SINGLE, GSM7_PART
    else:
        sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        encoding, single, part = "UCS-2", UCS2_SINGLE, UCS2_PART
    units = sum(sizes)
    if units == 0:
        return Segments(encoding, 0, 0)
    if units <= single:
        return Segments(encoding, units, 1)
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return Segments(encoding, units, count)


def to_e164(number: str, default_region: str | None = None) -> str | None:
    """The number in E.164 (``+14155551234``), or None when it is not a valid phone number."""
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def inbound_keyword(body: str) -> str | None:
    """ "stop", "start" or "help" when the whole inbound message is one of the carrier keywords.

    Like Twilio's own opt-out handling, only a message that *is* the keyword
    counts (case and surrounding spaces or punctuation ignored): "please stop
    sending me deals" is a conversation, not an opt-out.
    """
    word = body.strip().strip(".!").strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None
