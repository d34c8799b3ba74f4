"""How the site writes values for people: durations, doses, ages, citations, file names.

"not reported" (the source is silent) and a field left out (the curator recorded nothing) are
different facts; these helpers keep them apart: :data:`NR` for the first, ``None`` for the second,
and the templates draw them differently.
"""

from __future__ import annotations

import json
import re
from typing import Any

from markupsafe import Markup

from . import schema as S

__all__ = [
    "NR",
    "is_nr",
    "regimen_parts",
    "regimen_text",
    "num",
    "human_duration",
    "dose_text",
    "age_text",
    "measurement_text",
    "citation_text",
    "short_citation",
    "file_slug",
    "json_script",
    "human_bytes",
    "civic_levels",
]

NR = S.NOT_REPORTED


def is_nr(value: Any) -> bool:
    return isinstance(value, str) and value == NR


def num(x: float | int | None) -> str:
    """4.0 -> '4', 0.5 -> '0.5', 2e-05 -> '0.00002' (:func:`evidence.schema.number_text`)."""
    if x is None:
        return ""
    return S.number_text(x)


_UNITS = [("Y", "year"), ("M", "month"), ("W", "week"), ("D", "day")]
_TIME_UNITS = [("H", "hour"), ("M", "minute"), ("S", "second")]


def human_duration(iso: str | None) -> str | None:
    """'P1Y6M' -> '1 year 6 months'; 'not reported' and None pass through."""
    if iso is None or is_nr(iso):
        return iso
    m = re.fullmatch(S.ISO_DURATION, iso)
    if not m:
        return iso
    date_part, _, time_part = iso[1:].partition("T")
    parts: list[str] = []
    for text, units in ((date_part, _UNITS), (time_part, _TIME_UNITS)):
        for value, letter in re.findall(r"(\d+(?:\.\d+)?)([A-Z])", text):
            name = dict(units).get(letter, letter)
            n = float(value)
            parts.append(f"{num(n)} {name}{'' if n == 1 else 's'}")
    return " ".join(parts) or iso


def dose_text(dose: S.Dose | str | None) -> str | None:
    """'4 mg', 'full dose', '4 mg (full dose)'; 'not reported' and None pass through."""
    if dose is None or is_nr(dose):
        return dose  # type: ignore[return-value]
    assert isinstance(dose, S.Dose)
    amount = f"{num(dose.value)} {dose.unit}" if dose.value is not None else ""
    if amount and dose.qualifier:
        return f"{amount} ({dose.qualifier})"
    return amount or dose.qualifier


def regimen_parts(t: S.Treatment) -> list[tuple[str, str]]:
    """A treatment's regimen as (what, its text or NR): dose, frequency, route, duration. The
    drug page's text (:func:`regimen_text`) and the tables' cells (site_html) are made from it."""
    return [("dose", dose_text(t.dose) or NR), ("frequency", t.frequency), ("route", t.route), ("duration", human_duration(t.duration) or NR)]


def regimen_text(t: S.Treatment) -> str:
    """'4 mg, daily, oral, for 3 months'; a part the source does not give is named: 'dose not
    reported, daily, route not reported, duration not reported' (a row of bare 'not reported'
    did not say which was missing)."""
    return ", ".join(f"{what} not reported" if is_nr(text) else f"for {text}" if what == "duration" else text
                     for what, text in regimen_parts(t))


def age_text(age: S.Age | str) -> str:
    if is_nr(age):
        return NR
    assert isinstance(age, S.Age)
    unit = age.unit
    if age.value is not None:
        text = f"{num(age.value)} {unit if age.value != 1 else unit.rstrip('s')}"
    elif age.min is not None:
        text = f"{num(age.min)} to {num(age.max)} {unit}"
    else:
        text = str(age.category)
    if age.basis == "derived":
        text += " (derived)"
    return text


def measurement_text(m: S.Measurement | str | None) -> str | None:
    if m is None or is_nr(m):
        return m  # type: ignore[return-value]
    assert isinstance(m, S.Measurement)
    return f"{num(m.value)} {m.unit}" if m.unit else num(m.value)


def citation_text(s: S.Source) -> str:
    """Vancouver-style: 'Zimmermann N, et al. Title. JAMA Dermatol. 2019;155(3):342-346.'"""
    authors = ", ".join(s.authors) + ("" if s.authors_complete else ", et al")
    title = s.title.rstrip()
    parts = [f"{authors}. {title}{'' if title.endswith(('.', '?', '!')) else '.'}"]
    venue = s.journal or s.publisher
    if venue:
        vol = f";{s.volume}" if s.volume else ""
        iss = f"({s.issue})" if s.issue else ""
        pages = f":{s.pages}" if s.pages else ""
        parts.append(f"{venue}. {s.year}{vol}{iss}{pages}.")
    else:
        parts.append(f"{s.year}.")
    if s.doi:
        parts.append(f"doi:{s.doi}")
    return " ".join(parts)


def short_citation(s: S.Source) -> str:
    """'Zimmermann et al. 2019'."""
    family = s.authors[0].rsplit(" ", 1)[0] if " " in s.authors[0] else s.authors[0]
    more = len(s.authors) > 1 or not s.authors_complete
    return f"{family}{' et al.' if more else ''} {s.year}"


def file_slug(key: str) -> str:
    """A file name for a key: safe characters kept, others replaced; collisions are caught by the writer."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key).lstrip(".")
    return slug or "_"


def json_script(data: Any) -> Markup:
    """JSON for a <script type="application/ld+json"> element: nothing in it can close the element."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def civic_levels() -> dict[str, str]:
    """CIViC level -> meaning, read from the schema's own description of the scale."""
    desc = S.EvidenceLevel.model_fields["scale"].description or ""
    return {m.group(1): m.group(2) for m in re.finditer(r"\b([A-E]) ([a-z][a-z ]*?)(?=,|\))", desc)}
