"""The small pieces every page repeats (a value, a link, a response, the claims of a record),
written in Python: a page calls them thousands of times, and a Jinja macro call costs about ten
times as much. Every value is escaped with markupsafe and every address goes through
:func:`evidence.render.safe_href`; the result is ``Markup``, so templates stay autoescaped.

"not reported" (the source is silent) and a field left out (nothing recorded) are drawn
differently here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from jinja2 import pass_context
from markupsafe import Markup, escape

from . import schema as S
from .site_format import NR

__all__ = ["Ui"]

_ARROWS = {"improved": "▲", "worsened": "▼", "unchanged": "■", "new onset": "●"}


def _absent(why: str = "not recorded", mark: str = "—") -> Markup:
    return Markup('<span class="absent">%s<span class="vh"> %s</span></span>') % (mark, why)


_NR = Markup('<span class="nr">not reported</span>')


class Ui:
    """Exposed to templates as ``ui``; methods that write links read the page's ``root``."""

    def __init__(self, model, safe_href):
        self.m = model
        self.safe_href = safe_href
        self._secondary: dict[tuple[str, str], bool] = {}
        self._nav: dict[tuple[str, str], Markup] = {}

    # -- values ------------------------------------------------------------------------------
    def val(self, x: Any, empty: str = "—") -> Markup:
        if x is None or x == "":
            return _absent(mark=empty)
        if x == NR:
            return _NR
        return escape(x)

    def nr(self) -> Markup:
        return _NR

    def absent(self, why: str = "not recorded") -> Markup:
        return _absent(why)

    def response(self, r: str | None) -> Markup:
        if r is None or r == "":
            return _absent()
        if r == NR:
            return _NR
        return Markup('<span class="resp resp-%s">%s</span>') % (r.replace(" ", "-"), r)

    def direction(self, d: str | None) -> Markup:
        if d is None or d == "":
            return _absent()
        if d == NR:
            return _NR
        return Markup('<span class="dir dir-%s"><span aria-hidden="true">%s</span> %s</span>') % (d.replace(" ", "-"), _ARROWS.get(d, ""), d)

    def level(self, c: S.CaseReport) -> Markup:
        scale, level = self.m.level(c)
        return Markup('<span class="level level-%s" title="%s">%s %s</span>') % (level, self.m.level_text(c), scale.upper(), level)

    # -- links -------------------------------------------------------------------------------
    @pass_context
    def link(self, ctx, path: str | None, text: Any) -> Markup:
        return Markup(self._link(str(ctx.get("root", "")), path, text))

    def _link(self, root: str, path: str | None, text: Any) -> str:
        href = self.safe_href(root + path) if path else None
        if href is None:
            return str(escape(text))
        return f'<a href="{escape(href)}">{escape(text)}</a>'

    def ext(self, url: str | None, text: Any) -> Markup:
        href = self.safe_href(url)
        if href is None:
            return escape(text)
        return Markup(f'<a class="ext" href="{escape(href)}" rel="noopener noreferrer">{escape(text)}</a>')

    def _term(self, root: str, kind: str, key: str) -> str:
        if key == NR:
            return str(_NR)
        return self._link(root, self.m.url(kind, key), self.m.label(kind, key))

    @pass_context
    def term(self, ctx, kind: str, key: str) -> Markup:
        return Markup(self._term(str(ctx.get("root", "")), kind, key))

    @pass_context
    def terms(self, ctx, kind: str, keys: list[str], why: str = "none recorded") -> Markup:
        if not keys:
            return _absent(why)
        root = str(ctx.get("root", ""))
        return Markup(", ".join(self._term(root, kind, k) for k in keys))

    @pass_context
    def anyterm(self, ctx, key: str) -> Markup:
        kind, k = self.m.any_term(key)
        return self.term(ctx, kind, k)

    # -- provenance --------------------------------------------------------------------------
    def _is_secondary(self, claim: S.Claim, case: S.CaseReport | None) -> bool:
        key = (claim.source, case.id if case is not None else "")
        hit = self._secondary.get(key)
        if hit is None:
            hit = self._secondary[key] = self.m.is_secondary(claim, case)
        return hit

    @pass_context
    def claims(self, ctx, items: list[S.Claim], case: S.CaseReport | None = None, label: str = "Evidence") -> Markup:
        """The claims of a record: source and locator, quote, curator's note, a mark on each claim
        known through a secondary source, and one on the list when all of them are."""
        if not items:
            return Markup("")
        root = str(ctx.get("root", ""))
        flags = [self._is_secondary(c, case) for c in items]
        out = [f'<div class="claims" data-pagefind-ignore>\n<p class="claims-label">{escape(label)}']
        if all(flags):
            out.append(' <span class="badge badge-secondary">known only through a secondary source</span>')
        out.append("</p>\n<ul>")
        for c, sec in zip(items, flags):
            where = self._link(root, self.m.url("sources", c.source), self.m.label("sources", c.source))
            out.append(f'\n<li class="claim{" claim-secondary" if sec else ""}"><span class="claim-where">{where}, {escape(c.locator)}</span>')
            if sec:
                out.append(' <span class="badge badge-secondary">secondary source</span>')
            if c.quote:
                out.append(f"<blockquote><p>“{escape(c.quote)}”</p></blockquote>")
            if c.note:
                out.append(f'<p class="note"><span class="note-label">Curator’s note:</span> {escape(c.note)}</p>')
            out.append("</li>")
        out.append("\n</ul>\n</div>")
        return Markup("".join(out))

    @pass_context
    def nav(self, ctx, nav: list[tuple[str, str, str]], current: str) -> Markup:
        """The site's navigation, the same on every page of one depth and kind: made once."""
        root = str(ctx.get("root", ""))
        key = (root, current)
        hit = self._nav.get(key)
        if hit is None:
            here = ' aria-current="page"'
            items = "".join(f'<li><a href="{escape(root + href)}"{here if kind == current else ""}>{escape(text)}</a></li>\n'
                            for href, text, kind in nav)
            hit = self._nav[key] = Markup(f"<ul>\n{items}</ul>")
        return hit

    # -- blocks ------------------------------------------------------------------------------
    def table_open(self, label: str, cls: str = "", search: bool = False) -> Markup:
        """A scrollable, labelled table; left out of the search index unless ``search`` (big
        tables repeat what the pages they link to say, and would make the index slow to build)."""
        ignore = "" if search else " data-pagefind-ignore"
        return Markup('<div class="table-wrap" role="region" aria-label="%s" tabindex="0"%s><table class="%s">') % (label, Markup(ignore), cls)

    def source_ids(self, s: S.Source) -> Markup:
        items = []
        if s.doi:
            items.append(Markup("<li>DOI %s</li>") % self.ext(f"https://doi.org/{s.doi}", s.doi))
        if s.pmid:
            items.append(Markup("<li>PubMed %s</li>") % self.ext(f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/", s.pmid))
        if s.pmcid:
            items.append(Markup("<li>PMC %s</li>") % self.ext(f"https://www.ncbi.nlm.nih.gov/pmc/articles/{s.pmcid}/", s.pmcid))
        if s.url:
            items.append(Markup("<li>%s</li>") % self.ext(s.url, "Publisher’s page"))
        if not items:
            items.append(Markup('<li class="muted">No checked identifier.</li>'))
        return Markup('<ul class="ids">%s</ul>') % Markup("").join(items)

    def curators(self, cs: list[S.Curator]) -> Markup:
        parts = []
        for cur in cs:
            if cur.orcid:
                parts.append(Markup('%s <span class="muted">(ORCID %s)</span>') % (self.ext(f"https://orcid.org/{cur.orcid}", cur.name), cur.orcid))
            else:
                parts.append(escape(cur.name))
        return Markup(", ").join(parts)

    def identifiers(self, t: S.VocabTerm) -> Markup:
        if not t.identifiers:
            return Markup('<p class="muted">No identifier was checked for this term.</p>')
        lis = Markup("").join(Markup("<li>%s</li>") % self.ext(self.m.identifier_link(c), c) for c in t.identifiers)
        out = Markup('<ul class="ids">%s</ul>') % lis
        if t.identifier_provenance:
            out += Markup('<p class="muted small">Checked in: %s</p>') % t.identifier_provenance
        return out

    def legend(self) -> Markup:
        return Markup('<p class="legend small"><span class="nr">not reported</span> the source is silent on it · '
                      '<span class="absent">—</span> nothing recorded · <span class="badge badge-secondary">secondary source</span> '
                      "known through a publication that retells the case</p>")

    # -- big tables, row by row (thousands of rows on a large kb) --------------------------------
    def _val(self, x: Any, why: str = "not recorded", nr: str = "") -> str:
        """A cell's value; ``nr`` names what is not reported, where a bare 'not reported' would
        not say (the parts of a regimen)."""
        if x is None or x == "":
            return str(_absent(why))
        if x == NR:
            return f'<span class="nr">{escape(nr)} not reported</span>' if nr else str(_NR)
        return str(escape(x))

    @pass_context
    def exposure_rows(self, ctx, exps: list, show_drug: bool = False) -> Markup:
        """The rows of a patients-treated table: one per patient and treatment."""
        root = str(ctx.get("root", ""))
        m = self.m
        out = []
        for e in exps:
            t = e.treatment
            p = e.patient
            href = self.safe_href(f"{root}{m.url('cases', e.case.id)}#{e.anchor}")
            cells = [f'<td><a href="{escape(href)}">{escape(e.case.id)}</a></td>', f"<td>{escape(p.id)}</td>"]
            if show_drug:
                cells.append(f"<td>{self._term(root, 'drugs', t.drug)}</td>")
            cells.append(f"<td>{self._val(e.age)}</td>")
            cells.append(f"<td>{self._val(e.sex)}</td>")
            cells.append(f"<td>{self._val(m.genotype_text(e))}</td>")
            cells.append("<td>" + (", ".join(self._term(root, "diseases", k) for k in e.conditions) or str(_absent())) + "</td>")
            *regimen, duration = [self._val(text, nr=what) for what, text in e.regimen_parts]
            cells.append(f"<td>{', '.join(regimen)}; {duration}</td>")
            if e.course:
                badge = ' <span class="badge badge-course">rechallenge</span>' if e.rechallenge else (
                    ' <span class="badge badge-course">dechallenge</span>' if e.dechallenge else "")
                cells.append(f"<td>{escape(' → '.join(e.course))}{badge}</td>")
            else:
                cells.append(f"<td>{_absent('no change recorded')}</td>")
            outs = "<br>".join(f"{escape(m.label('measures', o.measure))}: {self.direction(o.direction)}, {self.response(o.response)}" for o in e.outcomes)
            cells.append(f"<td>{outs or _absent('none recorded')}</td>")
            aes = "<br>".join(f"{self._term(root, 'phenotypes', a.term)} ({escape(a.severity)}; {escape(a.action)})" for a in e.adverse_events)
            cells.append(f"<td>{aes or 'none recorded'}</td>")
            cells.append(f"<td>{self.level(e.case)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>\n")
        return Markup("".join(out))

    @pass_context
    def evidence_rows(self, ctx, rows: list, columns: list[str]) -> Markup:
        """The body of the evidence table, with the data-* values its filters read."""
        root = str(ctx.get("root", ""))
        out = []
        for r in rows:
            f = r.filters
            attrs = "".join(f' data-{k}="{escape("|".join(f.get(k, [])))}"' for k in ("drug", "gene", "condition", "response", "level"))
            cells = [f'<tr class="scope-{escape(r.scope)}"{attrs}><td>{escape(r.scope)}</td>']
            for col in columns:
                v = r.cells.get(col, "")
                u = r.links.get(col)
                if v == NR:
                    cells.append(f"<td>{_NR}</td>")
                elif v == "":
                    cells.append(f"<td>{_absent()}</td>")
                elif u and (href := self.safe_href(root + u)):
                    cells.append(f'<td><a href="{escape(href)}">{escape(v)}</a></td>')
                elif col == "response":
                    cells.append(f"<td>{self.response(v)}</td>")
                else:
                    cells.append(f"<td>{escape(v)}</td>")
            out.append("".join(cells) + "</tr>\n")
        return Markup("".join(out))
