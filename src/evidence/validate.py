"""Stage 2: check every file against the schema and every reference across files.

Every problem in every file is collected, then reported sorted; nothing stops at the first.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import pickle
import re
import stat
import typing
import unicodedata
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from . import schema as S
from .annotations import MapOf, accepts_not_reported, unwrap
from .cache import BuildCache, code_digest, digest
from .cases import CaseFacts, CaseModels, Pickled, case_facts, facts_of
from .config import Config
from .duplicates import check_duplicates
from .errors import Diagnostic, LoadError, sort_diagnostics
from .load import FileShas, KbFile, read_kb
from .perf import gc_paused, parallel_imap
from .yamlio import YamlDoc, field_name

__all__ = ["Kb", "validate_kb", "normalise_text", "closest"]


@dataclass
class Kb:
    """A kb that passed the schema (and, if ``diagnostics`` has no error, every rule)."""

    config: Config
    # A case the build cache has is read back when asked for (see evidence.cases).
    cases: MutableMapping[str, S.CaseReport] = field(default_factory=CaseModels)
    sources: dict[str, S.Source] = field(default_factory=dict)
    vocab: dict[str, dict[str, S.VocabTerm]] = field(default_factory=dict)
    files: dict[str, KbFile] = field(default_factory=dict)  # "case:<id>", "source:<id>", "vocabulary:<kind>"
    vocab_digest: str = ""  # a hash of the vocabulary files (what every compiled file depends on)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.level == "error" for d in self.diagnostics)

    def term(self, kind: str, key: str) -> S.VocabTerm | None:
        return self.vocab.get(kind, {}).get(key)


# ----------------------------------------------------------------------------- schema errors

_PATTERN_HELP = {
    S.ISO_DURATION: "an ISO 8601 duration in whole units (a fraction only of seconds) such as P3M (3 months), P1Y6M, P2W or P10D",
    S.HGVS: "HGVS c. notation with a versioned transcript, such as NM_033629.6:c.52G>A",
}


def _pattern_help(pattern: str) -> str:
    if pattern in _PATTERN_HELP:
        return _PATTERN_HELP[pattern]
    table = [
        ("^10\\.", "a DOI such as 10.1001/jamadermatol.2018.5077, without https://doi.org/"),
        ("^[1-9]\\d{0,8}$", "a PubMed id of digits only, such as 30673078"),
        ("^PMC", "PMC and digits, such as PMC6440279"),
        ("^\\d{4}-\\d{4}", "an ORCID iD such as 0000-0002-1825-0097"),
        ("^https?://", "an http:// or https:// address"),
        (".txt$", "a plain file name ending in .txt, with no folder (no / and no ..)"),
        ("^p\\.", "HGVS protein notation such as p.(Asp18Asn)"),
        ("[a-z0-9-]*[a-z0-9]$", "lower-case letters, digits and hyphens, such as zimmermann-2019"),
        ("[A-Za-z0-9_-]*$", "letters, digits, - and _, such as P1 or T1"),
        ("[A-Za-z0-9_.:-]+$", "a CURIE such as HGNC:12269"),
    ]
    for needle, text in table:
        if needle in pattern:
            return text
    return f"text matching {pattern}"


def _model_at(root: Any, loc: tuple) -> type[BaseModel] | None:
    if isinstance(root, MapOf):
        if not loc:
            return None
        root, loc = root.model, loc[1:]
    ann: Any = root
    for seg in loc:
        models = [t for t in unwrap(ann) if isinstance(t, type) and issubclass(t, BaseModel)]
        lists = [t for t in unwrap(ann) if typing.get_origin(t) is list]
        if isinstance(seg, int):
            if not lists:
                return None
            ann = typing.get_args(lists[0])[0]
            continue
        if not models or seg not in models[0].model_fields:
            return None
        ann = models[0].model_fields[seg].annotation
    models = [t for t in unwrap(ann) if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if models else None


def _accepts_not_reported(root: type[BaseModel], loc: tuple) -> bool:
    model = _model_at(root, loc[:-1])
    if model is None or loc[-1] not in model.model_fields:
        return False
    return accepts_not_reported(model.model_fields[loc[-1]].annotation)


def _clean_loc(data: Any, loc: tuple) -> tuple[tuple, Any, bool]:
    """Drop pydantic's union-member segments; return (loc, value there, whether it exists)."""
    out: list = []
    cur = data
    exists = True
    for seg in loc:
        if isinstance(seg, int) and isinstance(cur, list) and 0 <= seg < len(cur):
            out.append(seg)
            cur = cur[seg]
        elif isinstance(seg, str) and isinstance(cur, dict) and seg in cur:
            out.append(seg)
            cur = cur[seg]
        elif isinstance(seg, str) and isinstance(cur, dict) and not (seg[:1].isupper() or "[" in seg or seg in ("str", "list", "dict", "int", "float", "bool", "date")):
            out.append(seg)  # a missing field
            exists = False
            cur = None
        else:
            continue
    return tuple(out), cur, exists


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 80 else text[:77] + ("...'" if isinstance(value, str) else "...")


def closest(word: str, choices: list[str] | typing.Iterable[str]) -> str | None:
    if word is None or not str(word).strip():
        return None  # nothing written: a suggestion would be a guess
    options = list(choices)
    match = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    if not match:
        lower = {o.lower(): o for o in options}
        match = difflib.get_close_matches(str(word).lower(), list(lower), n=1, cutoff=0.6)
        match = [lower[m] for m in match]
    return match[0] if match else None


def schema_diagnostics(model: type[BaseModel], doc: YamlDoc, exc: PydanticValidationError) -> list[Diagnostic]:
    """Turn pydantic's errors into curator-facing diagnostics with positions."""
    data = doc.data
    errors = exc.errors(include_url=False)
    cleaned = []
    for err in errors:
        loc, value, exists = _clean_loc(data, tuple(err["loc"]))
        cleaned.append((loc, value, exists, err))
    # In a `X | not reported` field, keep only the branch that matches what was written.
    by_loc: dict[tuple, list] = {}
    for item in cleaned:
        by_loc.setdefault(item[0], []).append(item)
    out: list[Diagnostic] = []
    reported_nr: set[tuple] = set()
    for loc, value, exists, err in cleaned:
        etype = err["type"]
        if exists and etype != "missing" and (value is None or (isinstance(value, str) and not value.strip())):
            # `field:` with nothing after it, or `field: ""`: one message, whatever the field's type.
            if loc not in reported_nr:
                reported_nr.add(loc)
                name = field_name(data, loc)
                line, col = doc.where(loc)
                options = sorted({o for c in by_loc[loc] for o in re.findall(r"'([^']*)'", str(c[3].get("ctx", {}).get("expected", "")))})
                nr = _accepts_not_reported(model, loc)
                hint = "fill it in from the source" + (", or write `not reported` if the source is silent" if nr else "")
                out.append(Diagnostic(doc.path, line, col, f"{name} is empty", rule="schema-required", field=name,
                                      expected=("one of " + ", ".join(f"'{o}'" for o in options)) if len(options) > 1 else "", hint=hint))
            continue
        is_nr_literal = etype == "literal_error" and "'not reported'" in str(err.get("ctx", {}).get("expected", ""))
        deeper = [c for c in cleaned if c[0][: len(loc)] == loc and c[0] != loc]
        if is_nr_literal and (isinstance(value, (dict, list)) and (deeper or len(by_loc[loc]) > 1)):
            continue  # the writer meant the structured form; its own errors say what is wrong
        if loc in reported_nr:
            continue
        if is_nr_literal and not isinstance(value, str) and len(by_loc[loc]) > 1:
            continue  # a number where a mapping goes (age: 12): the mapping's error says so, with 'not reported' added
        is_date = etype in ("date_type", "date_from_datetime_parsing", "date_parsing")
        if not is_nr_literal and etype in ("model_type", "list_type", "dict_type", "date_type", "date_from_datetime_parsing", "enum") and isinstance(value, str) and value != S.NOT_REPORTED and (not is_date or _nr_typo(value)) and any(
            c[3]["type"] == "literal_error" and "'not reported'" in str(c[3].get("ctx", {}).get("expected", "")) for c in by_loc[loc] if c[3] is not err
        ):
            continue  # the 'not reported' branch of the same field reports it, once
        elif not is_nr_literal and etype in ("model_type", "list_type", "model_attributes_type") and _nr_typo(value):
            reported_nr.add(loc)
            name = field_name(data, loc)
            line, col = doc.where(loc)
            if _accepts_not_reported(model, loc):
                out.append(Diagnostic(doc.path, line, col, f"{name}: '{value}' is not a value this field takes", rule="schema-type", field=name,
                                      expected="exactly 'not reported' or the structured form", found=_show(value),
                                      hint="write `not reported` when the source is silent"))
            else:
                kind = "a list" if etype == "list_type" else "a mapping"
                out.append(Diagnostic(doc.path, line, col, f"{name} cannot be '{value}': the field is required", rule="schema-type", field=name,
                                      expected=kind, found=_show(value), hint="a case needs this field; see README.md, 'The case format'"))
            continue
        if is_nr_literal and isinstance(value, str):
            others = [c for c in by_loc[loc] if c[3] is not err]
            dated = any(c[3]["type"] in ("date_from_datetime_parsing", "date_parsing") for c in others)  # explained by its own error unless it means 'not reported'
            if any(c[3]["type"] in ("model_type", "list_type", "model_attributes_type") for c in others) or not others or (dated and _nr_typo(value)):
                reported_nr.add(loc)
                name = field_name(data, loc)
                line, col = doc.where(loc)
                kind = "a value" if not others else ("a list" if any(c[3]["type"] == "list_type" for c in others) else "a mapping" if any(c[3]["type"] in ("model_type", "model_attributes_type") for c in others) else "a value")
                example = _STRUCTURED.get(str(loc[-1]) if loc else "")
                hint = (f"write it as {kind}" + (f", such as {loc[-1]}: {example}" if example else "") + ", or `not reported` if the source is silent"
                        if kind != "a value" else "write `not reported` when the source is silent")
                if _nr_typo(value):
                    hint = "write exactly `not reported`"
                out.append(Diagnostic(doc.path, line, col, f"{name}: {_show(value)} is not allowed here", rule="schema-type", field=name,
                                      expected=f"{kind} or 'not reported'", found=_show(value), hint=hint))
                continue
            continue  # the other branch (a pattern or an enum) explains it; 'not reported' is added to its expectation
        d = _one(model, doc, loc, value, exists, err)
        if d.expected and any(c[3]["type"] == "literal_error" and "'not reported'" in str(c[3].get("ctx", {}).get("expected", "")) for c in by_loc[loc] if c[3] is not err):
            d = replace(d, expected=d.expected + ", or 'not reported'")
        out.append(d)
    return out


_STRUCTURED = {"dose": "{value: 4, unit: mg}", "age": "{value: 40, unit: years}", "before": "{value: 12, unit: points}",
               "after": "{value: 2, unit: points}", "reason": "{description: ...}"}  # the structured form of fields that take 'not reported'


def _nr_typo(value: Any) -> bool:
    """Whether text means 'not reported' in other words (nr, unknown, n/a ...)."""
    return isinstance(value, str) and value.strip().lower().replace("_", " ") in ("not reported", "nr", "unknown", "n/a", "na", "not given")


def _one(model: type[BaseModel], doc: YamlDoc, loc: tuple, value: Any, exists: bool, err: dict) -> Diagnostic:
    data = doc.data
    etype = err["type"]
    ctx = err.get("ctx", {}) or {}
    name = field_name(data, loc)
    if etype == "missing":
        line, col = doc.where(loc[:-1])
        nr = _accepts_not_reported(model, loc)
        hint = f"add `{loc[-1]}:`" + (" (write `not reported` if the source does not say)" if nr else "")
        return Diagnostic(doc.path, line, col, f"{name}: required field '{loc[-1]}' is missing", rule="schema-required", field=name, hint=hint)
    if etype == "extra_forbidden":
        line, col = doc.where(loc, key=True)
        owner = _model_at(model, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        guess = closest(str(loc[-1]), allowed)
        hint = f"did you mean '{guess}'?" if guess else "remove it"
        return Diagnostic(doc.path, line, col, f"{name}: unknown field '{loc[-1]}'", rule="schema-unknown-field", field=name,
                          expected=("one of " + ", ".join(allowed)) if allowed else "", hint=hint)
    if etype == "at_field":  # a model's own check of one of its fields (schema.at_field)
        loc = loc + (ctx["field"],)
        name = field_name(data, loc)
        line, col = doc.where(loc)
        return Diagnostic(doc.path, line, col, f"{name}{ctx['sep']}{ctx['message']}", rule=ctx["rule"], field=name, hint=ctx["hint"],
                          expected=ctx["expected"], found=ctx["found"])
    line, col = doc.where(loc)
    found = _show(value)
    if etype in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        options = re.findall(r"'([^']*)'", expected)
        guess = closest(str(value), options) if options else None
        if S.NOT_REPORTED in options and str(value).strip().lower().replace("_", " ") in ("unknown", "nr", "n/a", "na", "none", "not given", "not stated", "not reported"):
            guess = S.NOT_REPORTED
        rule = "unit" if loc and loc[-1] == "unit" and "mg" in expected else "schema-enum"
        what = "is not a known unit" if rule == "unit" else "is not an allowed value"
        return Diagnostic(doc.path, line, col, f"{name} {found} {what}", rule=rule, field=name, expected=f"one of {expected}", found=found,
                          hint=f"did you mean '{guess}'?" if guess else "use one of the listed values")
    if etype == "string_pattern_mismatch":
        help_ = _pattern_help(str(ctx.get("pattern", "")))
        rule = {"doi": "doi", "pmid": "pmid", "pmcid": "pmcid", "hgvs": "hgvs", "duration": "iso8601-duration", "timepoint": "iso8601-duration",
                "text_file": "file-reference", "orcid": "orcid", "url": "url", "protein": "hgvs", "id": "id-syntax"}.get(str(loc[-1]) if loc else "", "schema-pattern")
        if "identifiers" in loc:
            rule = "curie"
        return Diagnostic(doc.path, line, col, f"{name} {found} is not well formed", rule=rule, field=name, expected=help_, found=found,
                          hint="fix the notation; see README.md, 'The case format'")
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        def fmt(x: Any) -> str:
            return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)

        bound = {"greater_than": f"more than {fmt(ctx.get('gt'))}", "greater_than_equal": f"at least {fmt(ctx.get('ge'))}",
                 "less_than": f"less than {fmt(ctx.get('lt'))}", "less_than_equal": f"at most {fmt(ctx.get('le'))}"}[etype]
        rule = "plausible-dose" if "dose" in loc else "plausible-age" if "age" in loc else "plausible-value"
        return Diagnostic(doc.path, line, col, f"{name} {found} is not plausible", rule=rule, field=name, expected=bound, found=found,
                          hint="check the number against the source")
    if etype == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        rule = "curie" if "identifier prefix" in msg or "pattern" in msg else "schema-rule"
        return Diagnostic(doc.path, line, col, f"{name}: {msg}", rule=rule, field=name, found=found if not isinstance(value, dict) else "")
    if etype in ("finite_number",):
        return Diagnostic(doc.path, line, col, f"{name}: {found} is not a finite number", rule="plausible-value", field=name, expected="a finite number", found=found)
    if etype in ("too_short",):
        return Diagnostic(doc.path, line, col, f"{name} is empty", rule="schema-required", field=name, expected=f"at least {ctx.get('min_length', 1)} item(s)", found=found,
                          hint="add an entry (every record needs at least one claim with its source)" if loc and loc[-1] == "evidence" else "add an entry")
    if etype.startswith("date") or etype.startswith("datetime"):
        return Diagnostic(doc.path, line, col, f"{name}: not a date", rule="schema-type", field=name, expected="a date as YYYY-MM-DD", found=found,
                          hint="write the date as 2019-03-01")
    if etype == "string_too_long":
        return Diagnostic(doc.path, line, col, f"{name} is too long", rule="schema-length", field=name, expected=f"at most {ctx.get('max_length')} characters",
                          found=f"{len(value)} characters" if isinstance(value, str) else found, hint="keep quotes short; put the rest in a note")
    expected = {
        "string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
        "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
        "list_type": "a list", "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
        "date_from_datetime_parsing": "a date as YYYY-MM-DD", "date_parsing": "a date as YYYY-MM-DD", "date_type": "a date as YYYY-MM-DD",
        "string_too_long": f"at most {ctx.get('max_length')} characters", "string_too_short": "some text",
    }.get(etype, str(err.get("msg", etype)))
    hint = "see README.md, 'The case format'"
    if etype in ("int_type", "float_type") and isinstance(value, bool):  # schema.Number, Whole: YAML's yes/no/true/false
        hint = "write the number itself (yes, no, true and false are not numbers)"
    elif etype == "bool_type":  # schema.Flag
        hint = "write true or false, without quotes"
    elif etype in ("model_type", "model_attributes_type") and loc and str(loc[-1]) in _STRUCTURED:
        hint = f"write it as a mapping, such as {loc[-1]}: {_STRUCTURED[str(loc[-1])]}"
    return Diagnostic(doc.path, line, col, f"{name}: wrong type", rule="schema-type", field=name, expected=expected, found=found, hint=hint)


# ----------------------------------------------------------------------------- rules across files

_NR_WORDS = {"not reported"}


def normalise_text(text: str) -> str:
    """Unicode NFC and single spaces: line breaks in YAML must not defeat a verbatim match."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class _Checker:
    def __init__(self, kb: Kb):
        self.kb = kb
        self.diags: list[Diagnostic] = []
        self._texts: dict[str, str | None] = {}
        self.touched: set[str] = set()  # the sources the file being checked points to
        keys = {}
        for kind, terms in kb.vocab.items():
            for k in terms:
                keys.setdefault(k, kind)
        self._keys = keys

    def add(self, f: KbFile, loc: tuple, message: str, rule: str, level: str = "error", expected: str = "", found: str = "", hint: str = "", key: bool = False) -> None:
        assert f.doc is not None
        line, col = f.doc.where(loc, key=key)
        self.diags.append(Diagnostic(f.display, line, col, message, level=level, rule=rule, field=field_name(f.doc.data, loc),
                                     expected=expected, found=found, hint=hint))

    # -- references -------------------------------------------------------------------------
    def vocab_ref(self, f: KbFile, loc: tuple, key: str, kinds: tuple[str, ...]) -> None:
        if not str(key).strip():
            return  # an empty key: the schema check has said so already
        for kind in kinds:
            terms = self.kb.vocab.get(kind, {})
            if key in terms or key in getattr(terms, "broken", ()):
                return
        choices = [k for kind in kinds for k in self.kb.vocab.get(kind, {})]
        guess = closest(key, choices)
        where = " or ".join(f"kb/vocabulary/{k}.yaml" for k in kinds)
        other = self._keys.get(key)
        hint = f"did you mean '{guess}'?" if guess else f"add '{key}' to {where} with a checked identifier"
        if other:
            hint = f"'{key}' is a {other.rstrip('s')} term, not a {' or '.join(k.rstrip('s') for k in kinds)} term"
        self.add(f, loc, f"{field_name(f.doc.data, loc)}: unknown {' or '.join(k.rstrip('s') for k in kinds)} '{key}'", "unknown-term",
                 expected=f"a key of {where}", found=f"'{key}'", hint=hint)

    def source_ref(self, f: KbFile, loc: tuple, key: str) -> bool:
        self.touched.add(key)
        if key in self.kb.sources:
            return True
        guess = _source_guess(key, list(self.kb.sources))
        self.add(f, loc, f"{field_name(f.doc.data, loc)}: unknown source '{key}'", "unknown-source", expected="a file in kb/sources/",
                 found=f"'{key}'", hint=f"did you mean '{guess}'?" if guess else f"add kb/sources/{key}.yaml (see CONTRIBUTING.md)")
        return False

    def text_of(self, source: S.Source) -> str | None:
        if source.id in self._texts:
            return self._texts[source.id]
        text = None
        folder = self.kb.config.texts_dir()
        if folder and source.text_file:
            p = folder / source.text_file
            if p.is_file() and p.resolve().parent == folder.resolve():
                try:
                    text = normalise_text(p.read_text(encoding="utf-8", errors="replace"))
                except OSError:  # not readable (permissions): as if it were not there, which the warning says
                    text = None
        self._texts[source.id] = text
        return text

    def claims(self, f: KbFile, loc: tuple, claims: list[S.Claim], allowed: set[str] | None) -> None:
        for i, c in enumerate(claims):
            self.claim(f, loc + (i,), c, allowed)

    def claim(self, f: KbFile, cloc: tuple, c: S.Claim, allowed: set[str] | None) -> None:
        if not self.source_ref(f, cloc + ("source",), c.source):
            return
        if allowed is not None and c.source not in allowed:
            self.add(f, cloc + ("source",), f"{field_name(f.doc.data, cloc)}: the claim cites '{c.source}', which the case does not list", "claim-source",
                     expected=f"one of the case's sources: {', '.join(sorted(allowed))}", found=f"'{c.source}'",
                     hint="add the source to the case's `sources:` with its role")
        if c.quote:
            self.quote(f, cloc, c)

    def quote(self, f: KbFile, loc: tuple, c: S.Claim) -> None:
        src = self.kb.sources[c.source]
        if src is None:
            return  # the source file itself is broken and reported; its text cannot be looked up
        if src.text_held == S.TextHeld.none.value:
            self.add(f, loc + ("quote",), f"{field_name(f.doc.data, loc)}: the quote cannot be checked: we hold no text of '{c.source}'", "quote-unverifiable",
                     level="warning", hint="cite the source whose text we hold (for a retold case, the secondary source)")
            return
        folder = self.kb.config.texts_dir()
        if folder is None:
            return  # the texts are not available here; the check runs where they are
        text = self.text_of(src)
        if text is None:
            self.add(f, loc + ("quote",), f"{field_name(f.doc.data, loc)}: the text of '{c.source}' ({src.text_file}) is not in {folder}, or cannot be read", "quote-text-missing",
                     level="warning", hint="add the text file, or correct text_file in the source record")
            return
        needle = normalise_text(c.quote or "")
        if needle not in text:
            words = needle.split()
            best = ""
            for n in range(len(words), 0, -1):  # the longest leading run that is found, to show where it diverges
                if " ".join(words[:n]) in text:
                    best = " ".join(words[:n])
                    break
            hint = f"the text matches up to '{best}'" if best else "copy the words exactly from the source text"
            self.add(f, loc + ("quote",), f"{field_name(f.doc.data, loc)}: quote not found verbatim in {src.text_file}", "quote-not-found",
                     expected="the exact words of the source", found=_show(c.quote), hint=hint)

    # -- files ------------------------------------------------------------------------------
    def source(self, f: KbFile, s: S.Source) -> None:
        if f.path.stem != s.id:
            self.add(f, ("id",), f"id '{s.id}' does not match the file name '{f.path.name}'", "id-filename", expected=f"'{f.path.stem}'", found=f"'{s.id}'",
                     hint=f"rename the file to {s.id}.yaml or change the id")
        if s.reports_on is not None:
            if s.reports_on == s.id:
                self.add(f, ("reports_on",), "a source cannot report on itself", "reference-cycle")
            else:
                self.source_ref(f, ("reports_on",), s.reports_on)
        self.claims(f, ("citation_evidence",), s.citation_evidence, None)

    def vocabulary(self, f: KbFile, kind: str, terms: dict[str, S.VocabTerm]) -> None:
        for key, term in terms.items():
            if isinstance(term, S.Drug):
                if isinstance(term.targets, list):
                    for i, t in enumerate(term.targets):
                        self.vocab_ref(f, (key, "targets", i, "gene"), t.gene, ("genes",))
                        self.claims(f, (key, "targets", i, "evidence"), t.evidence, None)
                self.claims(f, (key, "class_evidence"), term.class_evidence, None)

    def case(self, f: KbFile, c: S.CaseReport) -> None:
        if f.path.stem != c.id:
            self.add(f, ("id",), f"id '{c.id}' does not match the file name '{f.path.name}'", "id-filename", expected=f"'{f.path.stem}'", found=f"'{c.id}'",
                     hint=f"rename the file to {c.id}.yaml or change the id")
        allowed: set[str] | None = set()
        primaries = set()
        listed: dict[str, int] = {}
        for i, ref in enumerate(c.sources):
            if ref.source in listed:  # one publication, one entry (and one role)
                self.add(f, ("sources", i, "source"), f"sources[{i}]: '{ref.source}' is listed twice (first as sources[{listed[ref.source]}])",
                         "duplicate-entry", hint="list each publication once, with its role")
            listed.setdefault(ref.source, i)
            known = self.source_ref(f, ("sources", i, "source"), ref.source)
            if ref.role == "primary":
                primaries.add(ref.source)
            if known and allowed is not None:
                allowed.add(ref.source)
            elif not known:
                allowed = None  # claims cannot be checked against a list that is itself wrong
        for i, ref in enumerate(c.sources):
            src = self.kb.sources.get(ref.source)
            if src and ref.role == "secondary" and src.reports_on not in primaries:
                self.add(f, ("sources", i, "role"), f"secondary source '{ref.source}' does not report on a primary source of this case", "secondary-source",
                         expected=f"its reports_on to be one of {', '.join(sorted(primaries)) or '(no primary source)'}", found=f"'{src.reports_on}'" if src.reports_on else "no reports_on",
                         hint="set reports_on in the source record, or list the publication it retells as the primary source")
        if not primaries:
            self.add(f, ("sources",), "the case lists no primary source", "primary-source", hint="add the publication that reports the case, with role: primary")
        for i, k in enumerate(c.conditions):
            if k in c.conditions[:i]:
                self.add(f, ("conditions", i), f"conditions[{i}]: '{k}' is listed twice", "duplicate-entry", hint="list each condition once")
            self.vocab_ref(f, ("conditions", i), k, ("diseases",))
        self.claims(f, ("evidence",), c.evidence, allowed)
        if c.cohort:
            self.cohort(f, c, allowed)
        seen: dict[str, int] = {}
        for i, p in enumerate(c.patients):
            if p.id in seen:
                self.add(f, ("patients", i, "id"), f"patient id '{p.id}' is used twice in this case", "duplicate-id", hint="give each patient its own id (P1, P2, ...)")
            seen[p.id] = i
            self.patient(f, ("patients", i), p, allowed)
        # A treatment cannot start after the publication that reports it (a year typed wrong).
        years = [s.year for s in (self.kb.sources.get(x) for x in primaries) if s is not None]
        for i, p in enumerate(c.patients):
            for j, t in enumerate(p.treatments):
                if years and isinstance(t.start, date) and t.start.year > max(years):
                    self.add(f, ("patients", i, "treatments", j, "start"),
                             f"{field_name(f.doc.data, ('patients', i, 'treatments', j, 'start'))}: {t.start.isoformat()} is after the publication "
                             f"that reports it ({max(years)})", "plausible-date", level="warning", hint="check the date against the source")

    def cohort(self, f: KbFile, c: S.CaseReport, allowed: set[str]) -> None:
        co = c.cohort
        assert co is not None
        if len(c.patients) > co.n:
            self.add(f, ("cohort", "n"), f"the case has {len(c.patients)} patient records but the cohort has n={co.n}", "cohort-size",
                     expected=f"at least {len(c.patients)}", found=str(co.n))
        self.claims(f, ("cohort", "evidence"), co.evidence, allowed)
        for i, oc in enumerate(co.outcome_counts):
            self.vocab_ref(f, ("cohort", "outcome_counts", i, "measure"), oc.measure, ("measures",))
            self.claims(f, ("cohort", "outcome_counts", i, "evidence"), oc.evidence, allowed)
            if oc.patients > co.n:
                self.add(f, ("cohort", "outcome_counts", i, "patients"), f"{oc.patients} patients is more than the cohort's n={co.n}", "cohort-size")
        for i, ac in enumerate(co.adverse_event_counts):
            if ac.term:
                self.vocab_ref(f, ("cohort", "adverse_event_counts", i, "term"), ac.term, ("phenotypes",))
            self.claims(f, ("cohort", "adverse_event_counts", i, "evidence"), ac.evidence, allowed)
            if ac.patients > co.n:
                self.add(f, ("cohort", "adverse_event_counts", i, "patients"), f"{ac.patients} patients is more than the cohort's n={co.n}", "cohort-size")

    def _unique(self, f: KbFile, loc: tuple, items: list, what: str) -> set[str]:
        ids: set[str] = set()
        for i, it in enumerate(items):
            if it.id in ids:
                self.add(f, loc + (i, "id"), f"{what} id '{it.id}' is used twice for this patient", "duplicate-id", hint="ids must be unique within a patient")
            ids.add(it.id)
        return ids

    def patient(self, f: KbFile, loc: tuple, p: S.Patient, allowed: set[str]) -> None:
        self.claims(f, loc + ("evidence",), p.evidence, allowed)
        for i, k in enumerate(p.diagnoses):
            self.vocab_ref(f, loc + ("diagnoses", i), k, ("diseases",))
        for i, k in enumerate(p.comorbidities):
            self.vocab_ref(f, loc + ("comorbidities", i), k, ("diseases", "phenotypes"))
        if isinstance(p.genotype, list):
            for i, g in enumerate(p.genotype):
                self.vocab_ref(f, loc + ("genotype", i, "gene"), g.gene, ("genes",))
                self.claims(f, loc + ("genotype", i, "evidence"), g.evidence, allowed)
        for i, pt in enumerate(p.prior_treatments):
            self.vocab_ref(f, loc + ("prior_treatments", i, "drug"), pt.drug, ("drugs",))
            self.claims(f, loc + ("prior_treatments", i, "evidence"), pt.evidence, allowed)
        t_ids = self._unique(f, loc + ("treatments",), p.treatments, "treatment")
        o_ids = self._unique(f, loc + ("outcomes",), p.outcomes, "outcome")
        a_ids = self._unique(f, loc + ("adverse_events",), p.adverse_events, "adverse event")
        outcome_treatment = {o.id: o.treatment for o in p.outcomes}
        for i, t in enumerate(p.treatments):
            tl = loc + ("treatments", i)
            self.vocab_ref(f, tl + ("drug",), t.drug, ("drugs",))
            if t.indication != S.NOT_REPORTED:
                self.vocab_ref(f, tl + ("indication",), t.indication, ("diseases",))
            self.claims(f, tl + ("evidence",), t.evidence, allowed)
            ph_ids: set[str] = set()
            for j, ph in enumerate(t.phases):
                pl = tl + ("phases", j)
                if ph.id in ph_ids:
                    self.add(f, pl + ("id",), f"phase id '{ph.id}' is used twice in this treatment", "duplicate-id")
                ph_ids.add(ph.id)
                self.claims(f, pl + ("evidence",), ph.evidence, allowed)
                if isinstance(ph.reason, S.Reason) and ph.reason.adverse_event and ph.reason.adverse_event not in a_ids:
                    self._local(f, pl + ("reason", "adverse_event"), ph.reason.adverse_event, a_ids, "adverse event")
                for k, oid in enumerate(ph.outcomes):
                    if oid not in o_ids:
                        self._local(f, pl + ("outcomes", k), oid, o_ids, "outcome")
                    elif outcome_treatment.get(oid) != t.id:
                        self.add(f, pl + ("outcomes", k), f"outcome '{oid}' belongs to treatment '{outcome_treatment.get(oid)}', not '{t.id}'", "local-reference")
                if isinstance(ph.duration, str) and ph.duration != S.NOT_REPORTED and not re.search(r"[1-9]", ph.duration):
                    self.add(f, pl + ("duration",), f"phase duration {ph.duration} is zero", "plausible-value", level="warning")
            if isinstance(t.duration, str) and t.duration != S.NOT_REPORTED and not re.search(r"[1-9]", t.duration):
                self.add(f, tl + ("duration",), f"treatment duration {t.duration} is zero", "plausible-value", expected="a positive duration", found=t.duration)
        for i, o in enumerate(p.outcomes):
            ol = loc + ("outcomes", i)
            if o.treatment not in t_ids:
                self._local(f, ol + ("treatment",), o.treatment, t_ids, "treatment")
            self.vocab_ref(f, ol + ("measure",), o.measure, ("measures",))
            self.claims(f, ol + ("evidence",), o.evidence, allowed)
        for i, a in enumerate(p.adverse_events):
            al = loc + ("adverse_events", i)
            if a.treatment not in t_ids:
                self._local(f, al + ("treatment",), a.treatment, t_ids, "treatment")
            self.vocab_ref(f, al + ("term",), a.term, ("phenotypes",))
            self.claims(f, al + ("evidence",), a.evidence, allowed)

    # Fields that name a vocabulary term or a source, by field name, for files whose schema failed.
    _RAW_REFS: dict[str, tuple[str, ...]] = {
        "drug": ("drugs",), "gene": ("genes",), "measure": ("measures",), "term": ("phenotypes",),
        "conditions": ("diseases",), "diagnoses": ("diseases",), "indication": ("diseases",),
        "comorbidities": ("diseases", "phenotypes"),
    }

    def raw_references(self, f: KbFile) -> None:
        """A case file that failed the schema still gets what it names checked, as far as its
        YAML allows, so that one run shows every problem: its unknown terms and sources, each
        claim that is whole (the source it cites is one the case lists, its quote is in the
        text), and the ids its patients' records name (an outcome's treatment, a phase's outcomes
        and adverse event)."""
        data = f.doc.data
        refs = data.get("sources") if isinstance(data, dict) else None
        # The case's sources, if every entry names one (else a claim cannot be checked against them).
        whole = isinstance(refs, list) and all(isinstance(r, dict) and isinstance(r.get("source"), str) for r in refs)
        listed = {r["source"] for r in refs} if whole else None

        def walk(node: Any, loc: tuple) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    kinds = self._RAW_REFS.get(k)
                    if kinds and isinstance(v, str) and v != S.NOT_REPORTED:
                        self.vocab_ref(f, loc + (k,), v, kinds)
                    elif kinds and isinstance(v, list):
                        for i, item in enumerate(v):
                            if isinstance(item, str):
                                self.vocab_ref(f, loc + (k, i), item, kinds)
                    elif k == "source" and isinstance(v, str):
                        self.source_ref(f, loc + (k,), v)
                    elif k == "evidence" and isinstance(v, list):
                        for i, item in enumerate(v):
                            try:
                                claim = S.Claim.model_validate(item)
                            except PydanticValidationError:  # the schema's errors say what is wrong with it
                                walk(item, loc + (k, i))
                                continue
                            self.claim(f, loc + (k, i), claim, listed)
                    else:
                        walk(v, loc + (k,))
            elif isinstance(node, list):
                for i, item in enumerate(node):
                    walk(item, loc + (i,))

        walk(data, ())
        for i, p in enumerate(data.get("patients", []) if isinstance(data, dict) and isinstance(data.get("patients"), list) else []):
            if isinstance(p, dict):
                self._raw_locals(f, ("patients", i), p)

    def _raw_locals(self, f: KbFile, loc: tuple, p: dict) -> None:
        """The local ids one raw patient's records name (see :meth:`patient`, for a valid one)."""
        def ids(key: str) -> set[str] | None:
            """The ids of the patient's records of a kind; None if one has no id (a record named
            by it may be that one: nothing is reported on guesswork)."""
            items = p.get(key, [])
            if not isinstance(items, list) or not all(isinstance(x, dict) and isinstance(x.get("id"), str) for x in items):
                return None
            return {x["id"] for x in items}

        def items(node: Any, key: str) -> list[tuple[int, dict]]:
            got = node.get(key) if isinstance(node, dict) else None
            return [(i, x) for i, x in enumerate(got) if isinstance(x, dict)] if isinstance(got, list) else []

        t_ids, o_ids, a_ids = ids("treatments"), ids("outcomes"), ids("adverse_events")
        for key in ("outcomes", "adverse_events"):
            for i, rec in items(p, key):
                ref = rec.get("treatment")
                if t_ids is not None and isinstance(ref, str) and ref not in t_ids:
                    self._local(f, loc + (key, i, "treatment"), ref, t_ids, "treatment")
        for i, t in items(p, "treatments"):
            for j, ph in items(t, "phases"):
                pl = loc + ("treatments", i, "phases", j)
                reason = ph.get("reason")
                ae = reason.get("adverse_event") if isinstance(reason, dict) else None
                if a_ids is not None and isinstance(ae, str) and ae not in a_ids:
                    self._local(f, pl + ("reason", "adverse_event"), ae, a_ids, "adverse event")
                outcomes = ph.get("outcomes")
                for k, oid in enumerate(outcomes if isinstance(outcomes, list) else []):
                    if o_ids is not None and isinstance(oid, str) and oid not in o_ids:
                        self._local(f, pl + ("outcomes", k), oid, o_ids, "outcome")

    def _local(self, f: KbFile, loc: tuple, ref: str, ids: set[str], what: str) -> None:
        guess = closest(ref, ids)
        self.add(f, loc, f"{field_name(f.doc.data, loc)}: no {what} '{ref}' for this patient", "local-reference",
                 expected=f"one of {', '.join(sorted(ids)) or '(none defined)'}", found=f"'{ref}'",
                 hint=f"did you mean '{guess}'?" if guess else f"define the {what} first, or fix the id")


_YEAR = re.compile(r"-\d{4}[a-z]?$")


def _source_guess(key: str, sources: list[str]) -> str | None:
    """The source a misspelt key may mean. Keys are author-year: the guess is made on the author
    first, then the key (a missing heymann-2016 is not zimmermann-2019, though they share
    'mann-201'; wenzel-2061 is wenzel-2016)."""
    def author(k: str) -> str:
        return _YEAR.sub("", k)

    near = closest(author(key), sorted({author(s) for s in sources}))
    if not near:
        return None
    same = sorted(s for s in sources if author(s) == near)
    return difflib.get_close_matches(key, same, n=1, cutoff=0.0)[0]


def _read_and_parse_at(files: list[KbFile], i: int) -> tuple[bool, Any, list[Diagnostic], list[Diagnostic], CaseFacts | None]:
    return _read_and_parse_file(files[i])


def _read_and_parse_file(f: KbFile) -> tuple[bool, Any, list[Diagnostic], list[Diagnostic], CaseFacts | None]:
    """Parse a file and check it against the schema: (whether its YAML could be read, the model
    or None, what the schema found, what reading found, a case's facts). The facts
    (evidence.cases) are worked out here, in the worker that checked the case: in the build's own
    process they took about 1.8 s of a 10,000-case cold build."""
    try:
        doc = f.doc
    except LoadError as e:  # a file not read that changed since it was listed
        return False, None, [], list(e.diagnostics), None
    if doc is None:
        return False, None, [], f.problems, None
    model, problems = _parse(f)
    if model is not None and f.kind in ("case", "source"):
        # The checks across files need the YAML only for the position of what they report, and
        # parse it again then. Kept for every file until the end, the parsed YAML of a
        # 10,000-case kb took the build to 2.7 GB before compiling (1 GB without it).
        f.release()
    return True, model, problems, f.problems, case_facts(model) if model is not None and f.kind == "case" else None


def _parse(f: KbFile) -> tuple[Any, list[Diagnostic]]:
    """Validate one file against its model."""
    doc = f.doc
    assert doc is not None
    if f.kind.startswith("vocabulary:"):
        kind = f.kind.split(":", 1)[1]
        model = S.VOCABULARY_KINDS[kind]
        if not isinstance(doc.data, dict):
            return None, [Diagnostic(f.display, 1, 1, "a vocabulary file is a mapping of key to term", rule="schema-type",
                                     expected="a mapping", found=_show(doc.data))]
        terms: _Terms = _Terms()
        diags: list[Diagnostic] = []
        for key, entry in doc.data.items():
            # fullmatch: with re.match, "$" let a key end in a newline ("evil\n"), which then named the page of "evil_"
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", key):
                line, col = doc.where((key,), key=True)
                shown = repr(key) if isinstance(key, str) else _show(key)  # a newline or a tab, escaped
                diags.append(Diagnostic(f.display, line, col, f"vocabulary key {shown} is not well formed", rule="id-syntax",
                                        expected="letters, digits, '.', '-' and '_', starting with a letter or digit", found=shown,
                                        hint="rename the key; a key names its page and its IRI"))
                continue
            try:
                terms[key] = model.model_validate(entry)
            except PydanticValidationError as exc:
                diags.extend(schema_diagnostics(MapOf(model), doc, _EntryErrors(exc, key)))  # type: ignore[arg-type]
                terms.broken.add(key)
        return terms, diags
    model = S.CaseReport if f.kind == "case" else S.Source
    if not isinstance(doc.data, dict):
        return None, [Diagnostic(f.display, 1, 1, f"a {f.kind} file is a YAML mapping", rule="schema-type", expected="a mapping", found=_show(doc.data))]
    try:
        return model.model_validate(doc.data), []
    except PydanticValidationError as exc:
        return None, schema_diagnostics(model, doc, exc)


class _Terms(dict):
    """A vocabulary file's terms, and the keys of those the schema refused (``broken``): a case
    that names one is not told the term is unknown, or to add it (the term's own error says
    what to fix)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()


class _EntryErrors:
    """A vocabulary entry's errors with the entry's key put in front of every path."""

    def __init__(self, exc: PydanticValidationError, key: str):
        self.exc = exc
        self.key = key

    def errors(self, include_url: bool = False) -> list[dict]:
        return [dict(e, loc=(self.key,) + tuple(e["loc"])) for e in self.exc.errors(include_url=False)]


def validate_kb(config: Config, paths: list[Path] | None = None, cache: BuildCache | None = None) -> Kb:
    """Load and check the whole kb (plus ``paths``); every problem is in ``kb.diagnostics``.

    With a ``cache``, a source or case file whose bytes, vocabulary, source texts and cited
    sources are all unchanged since a build that found no error in it is not parsed again: its
    checked model and its warnings come from the cache. Checks across files always run.
    """
    if not config.kb_dir.is_dir():
        # Read as an empty kb, this was a valid one of no case: a build replaced the site with an
        # empty one, and validate said "0 errors in 0 files".
        kb = Kb(config=config)
        setting = "evidence.toml" if (config.root / "evidence.toml").is_file() else "the default"
        kb.diagnostics = [Diagnostic(str(config.kb_dir), 1, 1, f"the kb folder {config.kb_dir} does not exist or is not a folder",
                                     rule="kb-folder", expected="the folder of case files (kb = \"" + config.kb + "\" in " + setting + ")",
                                     hint="run the command in the project's folder (the one with evidence.toml), or set kb in evidence.toml "
                                          "to the folder that holds the case files")]
        return kb
    with gc_paused():
        try:
            return _validate_kb(config, paths, cache or BuildCache(None))
        except LoadError as e:  # a file not read (load.FileShas) changed while the build read the kb
            kb = Kb(config=config)
            kb.diagnostics = list(e.diagnostics)
            return kb


def _texts_digest(config: Config, shas: FileShas | None) -> str:
    """A digest of the source texts (their names and SHA-256s), part of every validate key: a
    quote is checked against them. With ``shas`` a text whose identity on disk did not change is
    not read again (as the kb files are not, see load.FileShas)."""
    folder = config.texts_dir()
    if folder is None:
        return "no texts"
    parts = []
    for p in sorted(folder.iterdir()):
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                continue
            sha = shas.known(p, st) if shas is not None else None
            if sha is None:
                with open(p, "rb") as fh:  # the identity noted is never newer than the bytes read
                    st = os.fstat(fh.fileno())
                    sha = hashlib.file_digest(fh, "sha256").hexdigest()
                if shas is not None:
                    shas.note(p, st, sha)
        except OSError:
            sha = "unreadable"  # a quote checked against it gets the quote-text-missing warning, naming the file
        parts.append(f"{p.name}\0{sha}")
    return digest(str(folder.resolve()), *parts)


def _checked_key(context: str, f: KbFile) -> str:
    """The build-cache key of a checked case or source file: its bytes and its path as shown (the
    rules compare the id with the file's name, and the diagnostics kept with it name the file),
    under ``context`` (the code, the vocabulary and the source texts). Keyed by the bytes alone, a
    file renamed without its id passed a cached build, which a build without cache refused."""
    return digest(context, f.kind, f.display, f.sha)


def _validate_kb(config: Config, paths: list[Path] | None, cache: BuildCache) -> Kb:
    shas_key = digest("file-shas", str(config.kb_dir.resolve()))
    shas = FileShas.from_state(cache.get("file-shas", shas_key)) if cache.enabled else None
    raw, diags = read_kb(config.kb_dir, config.root, paths, shas)
    kb = Kb(config=config)
    kb.vocab_digest = digest(*(f"{f.kind}\0{f.sha}" for f in sorted(raw.files, key=lambda f: f.kind) if f.kind.startswith("vocabulary:")))
    context = digest("validate", code_digest(), kb.vocab_digest, _texts_digest(config, shas)) if cache.enabled else ""
    if shas is not None:
        cache.put("file-shas", shas_key, shas.state())
    # Sources are named by their file names (a source whose id differs is an error, never cached).
    source_sha = {f.path.stem: f.sha for f in raw.files if f.kind == "source"}
    # A source's entry is (model, diagnostics, cited sources, None); a case's, (its model pickled,
    # diagnostics, cited sources, facts): its model is read back only when asked for (see
    # evidence.cases), the checks across files use its facts.
    cached: dict[int, tuple[Any, list[Diagnostic]]] = {}
    if cache.enabled:
        for f in raw.files:
            if f.kind in ("case", "source"):
                entry = cache.get("validate", _checked_key(context, f))
                if isinstance(entry, tuple) and len(entry) == 4 and all(source_sha.get(sid) == sha for sid, sha in entry[2]):
                    cached[id(f)] = (Pickled(entry[3], entry[0], f.display) if f.kind == "case" else entry[0], entry[1])
    parsed: list[KbFile] = []
    broken_cases: list[KbFile] = []
    claimed: dict[str, list[KbFile]] = {}  # "case:<id>" or "source:<id>" -> the files that give that id, in order
    found: dict[int, list[Diagnostic]] = {}  # what reading and the schema found in each file
    facts: dict[int, CaseFacts] = {}  # each case's facts, as the worker that checked it worked them out
    # Case and source files the cache does not have are read and checked against the schema in
    # forked workers (each depends on nothing but its bytes); the checks across files follow here.
    todo = [f for f in raw.files if id(f) not in cached and f.kind in ("case", "source")]
    early = dict(zip((id(f) for f in todo), parallel_imap(_read_and_parse_at, range(len(todo)), shared=todo), strict=True))
    for f in raw.files:
        if id(f) in cached:
            model, problems = cached[id(f)][0], []
        else:
            readable, model, problems, f.problems, case_facts_found = early.pop(id(f), None) or _read_and_parse_file(f)
            if case_facts_found is not None:
                facts[id(f)] = case_facts_found
            diags.extend(f.problems)
            if not readable:
                continue
            found[id(f)] = f.problems + problems
        diags.extend(problems)
        if model is None:
            # Still register the id, so references to a broken file do not cascade.
            if isinstance(f.doc.data, dict) and isinstance(f.doc.data.get("id"), str) and f.kind in ("case", "source"):
                kb.files.setdefault(f"{f.kind}-broken:{f.doc.data['id']}", f)
            if f.kind == "case":
                broken_cases.append(f)
            continue
        f.model = model
        if f.kind == "case" or f.kind == "source":
            claimed.setdefault(f"{f.kind}:{model.id}", []).append(f)  # registered below, once every claim to the id is known
            continue
        kind = f.kind.split(":", 1)[1]
        kb.files[f.kind] = f
        kb.vocab[kind] = model
        parsed.append(f)
    # An id used by two files belongs to the one named after it (a copy of a file, its id left as
    # it was, is the one to change), else to the first; the other is a duplicate, and its rules
    # are not run (they would report what the file it copies reports).
    for k, fs in claimed.items():
        first = next((f for f in fs if f.path.stem == f.model.id), fs[0])
        for f in fs:
            if f is not first:
                line, col = f.doc.where(("id",))
                own = f" such as '{f.path.stem}', its file name" if f.path.stem != f.model.id and re.fullmatch(S.SLUG, f.path.stem) else ""
                diags.append(Diagnostic(f.display, line, col, f"{f.kind} id '{f.model.id}' is already used by {first.display}", rule="duplicate-id",
                                        hint=f"ids are unique across the kb: give this file an id of its own{own}"))
                continue
            kb.files[k] = f
            if f.kind == "case":
                if id(f) in facts and isinstance(kb.cases, CaseModels):
                    kb.cases.add(f.model.id, f.model, facts[id(f)])
                else:
                    kb.cases[f.model.id] = f.model
                if type(f.model) is Pickled:  # the pickle is the kb's now, let go once read back (50 MB at 10,000 cases)
                    f.model = None
            else:
                kb.sources[f.model.id] = f.model
            parsed.append(f)
    # Vocabulary keys are unique across kinds, so that one key names one thing.
    owner: dict[str, str] = {}
    for kind in sorted(kb.vocab):
        f = kb.files[f"vocabulary:{kind}"]
        for key in kb.vocab[kind]:
            if key in owner:
                line, col = f.doc.where((key,), key=True)
                diags.append(Diagnostic(f.display, line, col, f"vocabulary key '{key}' is also defined in {owner[key]}.yaml", rule="duplicate-id",
                                        hint="one key names one thing; rename one of them"))
            else:
                owner[key] = kind
    # Broken source files still count as existing, so their citers are not flagged as well.
    for k in list(kb.files):
        if k.startswith("source-broken:"):
            kb.sources.setdefault(k.split(":", 1)[1], None)  # type: ignore[arg-type]
    checker = _Checker(kb)
    for f in parsed:
        if id(f) in cached:
            diags.extend(cached[id(f)][1])
            continue
        start = len(checker.diags)
        checker.touched = set()
        if f.kind == "source":
            checker.source(f, f.model)
        elif f.kind == "case":
            checker.case(f, f.model)
        else:
            checker.vocabulary(f, f.kind.split(":", 1)[1], f.model)
        mine = checker.diags[start:]
        if f.kind in ("case", "source") and not any(d.level == "error" for d in mine):
            if cache.enabled:
                deps = tuple(sorted((sid, source_sha.get(sid)) for sid in checker.touched))
                if f.kind == "case":
                    entry = (pickle.dumps(f.model, protocol=pickle.HIGHEST_PROTOCOL), found.get(id(f), []) + mine, deps,
                             facts_of(kb.cases, f.model.id))
                else:
                    entry = (f.model, found.get(id(f), []) + mine, deps, None)
                cache.put("validate", _checked_key(context, f), entry)
            f.release()
    for f in broken_cases:
        checker.raw_references(f)
    _check_duplicate_identifiers(kb, checker)
    _check_variants(kb, checker)
    diags.extend(check_duplicates(kb))
    kb.sources = {k: v for k, v in kb.sources.items() if v is not None}
    kb.files = {k: v for k, v in kb.files.items() if "-broken:" not in k}
    kb.diagnostics = sort_diagnostics(diags + checker.diags)
    for f in kb.files.values():
        f.forget_bytes()
    return kb


def _check_variants(kb: Kb, checker: _Checker) -> None:
    """One HGVS names one variant: its gene, protein change and legacy name agree in every file.
    Each case's facts (evidence.cases) say it: its model is not read back from the build cache."""
    first: dict[str, tuple[str, tuple, tuple]] = {}
    for cid in sorted(kb.cases):
        f = kb.files[f"case:{cid}"]
        for i, j, hgvs, gene, protein, legacy in facts_of(kb.cases, cid).variants:
            facts = (gene, protein, legacy)
            loc = ("patients", i, "genotype", j, "variant", "hgvs")
            seen = first.setdefault(hgvs, (f.display, loc, facts))
            names = ("gene", "protein", "legacy_name")
            diff = [f"{n} '{a}' here but '{b}' there" for n, a, b in zip(names, facts, seen[2]) if a and b and a != b]
            if diff:
                line = f.doc.where(seen[1]) if seen[0] == f.display else None
                where = f"{seen[0]}" + (f":{line[0]}" if line else "")
                checker.add(f, loc, f"variant {hgvs} is described differently in {where}: {'; '.join(diff)}", "variant-consistency",
                            hint="one HGVS names one variant: make the files agree, or fix the HGVS")


def _check_duplicate_identifiers(kb: Kb, checker: _Checker) -> None:
    owners: dict[tuple[str, str], list[str]] = {}
    for sid in sorted(k for k, v in kb.sources.items() if v is not None):
        s = kb.sources[sid]
        for attr in ("doi", "pmid", "pmcid"):
            val = getattr(s, attr)
            if val:
                owners.setdefault((attr, val.lower()), []).append(sid)
    for (attr, _), sids in sorted(owners.items()):
        if len(sids) < 2:
            continue
        for sid in sids:
            f = kb.files[f"source:{sid}"]
            others = [kb.files[f"source:{o}"].display for o in sids if o != sid]
            val = getattr(kb.sources[sid], attr)
            checker.add(f, (attr,), f"{attr} {val} is also recorded in {', '.join(others)}", "duplicate-publication",
                        hint="one publication has one source record: keep one and cite it from every case")
