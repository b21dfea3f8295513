"""Phone numbers to E.164 with `phonenumbers` (never by stripping characters by hand).

AlfaCRM stores phones as typed or masked (`+7(999)999-99-99`, `89161234567`, `+380(97)047-32-99`);
UIS wants E.164. A number that cannot be parsed is kept as typed by the caller (`to_e164` → None).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "RU"


@lru_cache(maxsize=4096)
def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    if not raw or not str(raw).strip():
        return None
    text = str(raw).strip()
    # Russian habit: a national number written with the trunk prefix 8 and no plus (89161234567).
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_all(raws: list[str] | None, region: str = DEFAULT_REGION) -> list[str]:
    """E.164 for each parsable number, order kept, duplicates dropped."""
    out: list[str] = []
    for raw in raws or []:
        e164 = to_e164(raw, region)
        if e164 and e164 not in out:
            out.append(e164)
    return out


def national_digits(e164: str) -> str | None:
    """The national significant number of an E.164 phone (+79161234567 → 9161234567), for servers that
    compare digits; None when it does not parse."""
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
