"""The site model reads each case's facts (evidence.site_facts), not its model: a build reads back
from the build cache only the models of the pages it renders, and the facts say what the models
say."""

from __future__ import annotations

import os
import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import evidence.schema as S
from evidence.cache import BuildCache
from evidence.cases import CaseModels, Pickled, site_facts_of
from evidence.config import load_config
from evidence.pipeline import build
from evidence.site_facts import REF_TYPES, CaseRef, PatientRef, Ref, site_facts
from evidence.site_format import NR, age_text, human_duration, is_nr, measurement_text, regimen_parts, regimen_text
from evidence.site_html import Ui
from evidence.site_model import SiteModel, _claims_in
from evidence.validate import validate_kb

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A synthetic kb of 40 cases (bench/synth.py), with cohorts, genotypes and adverse events."""
    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    root = tmp_path_factory.mktemp("synth") / "project"
    synth.generate(root, 40, seed=3)
    return root


@pytest.fixture(params=["founding kb", "synthetic kb"])
def kb_root(request, synthetic) -> Path:
    return ROOT if request.param == "founding kb" else synthetic


def _cached_model(root: Path, cache: Path) -> tuple[Any, SiteModel]:
    """The kb validated twice through one cache (the second time every case is a pickle), and its
    site model, given each case's claims counted as the compiled parts count them (a build has
    them from there)."""
    fresh = validate_kb(load_config(root), cache=BuildCache(cache))
    counts = {cid: dict(Counter(cl.source for cl in _claims_in(c))) for cid, c in fresh.cases.items()}
    kb = validate_kb(load_config(root), cache=BuildCache(cache))
    assert kb.ok and isinstance(kb.cases, CaseModels) and kb.cases.unread() == len(kb.cases) > 0
    return kb, SiteModel(kb, claim_counts=counts)


def m_ui(m: SiteModel) -> Ui:
    from evidence.render import safe_href

    return Ui(m, safe_href)


def _genotype_text(m: SiteModel, p: S.Patient) -> str:
    """A patient's genotype as the tables showed it when they read the model (before session 24)."""
    if is_nr(p.genotype):
        return NR
    out = []
    for g in p.genotype:
        gene = m.label("genes", g.gene)
        if isinstance(g.variant, S.Variant):
            out.append(f"{gene} {g.variant.hgvs}" + (f" {g.variant.protein}" if g.variant.protein else ""))
        else:
            out.append(f"{gene} (variant not reported)")
    return "; ".join(out)


def test_the_facts_say_what_the_models_say(kb_root):
    kb = validate_kb(load_config(kb_root), cache=BuildCache(None))
    m = SiteModel(kb)
    assert set(m.facts) == set(kb.cases)
    for cid, c in kb.cases.items():
        sf = m.facts[cid]
        assert sf == site_facts(c) == site_facts_of(kb.cases, cid)
        assert sf.title == c.title and sf.sources == tuple((r.source, r.role) for r in c.sources) and sf.conditions == tuple(c.conditions)
        assert sf.drugs() == m.case_drugs(c) and sf.genes() == m.case_genes(c)
        assert sf.n_patients() == m.case_patients(c) and sf.date == m.case_date(c)
        assert sf.level == (c.evidence_level.scale, c.evidence_level.level)
        assert [pf.id for pf in sf.patients] == [p.id for p in c.patients]
        for e in m.case_exposures(c):
            t = e.treatment.resolve()
            assert isinstance(t, S.Treatment) and t in [t2 for p in c.patients for t2 in p.treatments]
            assert e.regimen == regimen_text(t) and e.treatment.drug == t.drug and e.patient.resolve() in c.patients
            assert [o.resolve() for o in e.outcomes] == [o for o in e.patient.outcomes if o.treatment == t.id]
            assert [(o.measure, o.response, o.direction) for o in e.outcomes] == [(o.measure, o.response, o.direction) for o in e.patient.outcomes
                                                                                  if o.treatment == t.id]
            assert [(a.term, a.severity, a.action) for a in e.adverse_events] == [(a.term, a.severity, a.action) for a in e.patient.adverse_events
                                                                                  if a.treatment == t.id]
            p = e.patient.resolve()
            assert (e.age, e.sex, e.regimen_parts) == (age_text(p.age), p.sex, tuple(regimen_parts(t)))
            assert m.genotype_text(e) == _genotype_text(m, p)
            assert m.level_text(e.case) == m.level_text(c) and str(m_ui(m).level(e.case)) == str(m_ui(m).level(c))


def test_the_carrier_and_outcome_tables_read_the_facts_as_they_read_the_models(kb_root):
    """What the carrier tables (a gene's, a variant's) and the outcome tables (a measure's) show
    of a row: from its ref, as the templates worked it out from the model before session 25."""
    kb = validate_kb(load_config(kb_root), cache=BuildCache(None))
    m = SiteModel(kb)
    carriers = [row for rows in m.genotyped.values() for row in rows]
    assert carriers and all(type(g).__name__ == "GenotypeRef" for _, _, g in carriers)
    for c, p, g in carriers:
        model = g.resolve()
        assert (g.zygosity, g.inheritance, g.mechanism) == (model.zygosity, model.inheritance, model.mechanism)
        v = m.variant_of(g)
        if model.variant == NR:
            assert v == NR
        else:
            assert (v.hgvs, v.protein, v.legacy_name, v.transcript_status, v.protein_status) == (
                model.variant.hgvs, model.variant.protein, model.variant.legacy_name, model.variant.transcript_status, model.variant.protein_status)
        assert m.variant_of(model) == v
        assert m.treated_with(c, p) == [t.drug for t in p.resolve().treatments] == m.treated_with(c.resolve(), p.resolve())
    outcomes = [row for rows in m.outcomes_by_measure.values() for row in rows]
    assert outcomes
    for _e, o in outcomes:
        model = o.resolve()
        assert (o.timepoint_qualifier, o.description) == (model.timepoint_qualifier, model.description)
        when = NR if model.timepoint == NR else human_duration(model.timepoint)
        assert m.outcome_values(o) == (when, measurement_text(model.before), measurement_text(model.after)) == m.outcome_values(model)
    if kb_root == ROOT:  # the founding kb: a variant with its protein change, outcomes with a time
        assert any(m.variant_of(g) != NR and m.variant_of(g).protein for _, _, g in carriers)
        assert any(m.outcome_values(o)[0] != NR for _, o in outcomes)


def test_the_site_model_reads_no_case_model_back(synthetic, tmp_path):
    """Indexing, counting, the matrix, the lists' rows, the contributors and the drug pages'
    tallies come from the facts: no case model is read back from the cache for them."""
    kb, m = _cached_model(synthetic, tmp_path / "cache")
    m.counts(), m.coverage(), m.matrix(), m.contributors(), m.modified(), m.curators()
    assert [m.label("cases", cid) for cid in m.case_ids] == [m.facts[cid].title for cid in m.case_ids]
    tallies = {e.regimen for e in m.exposures} | {(o.measure, o.response) for e in m.exposures for o in e.outcomes}
    assert tallies and m.genotyped and m.cohorts and m.ae_by_term
    assert kb.cases.unread() == len(kb.cases), "the site model read models back"


def test_a_ref_holds_the_facts_and_reads_its_model_for_anything_else(synthetic, tmp_path):
    kb, m = _cached_model(synthetic, tmp_path / "cache")
    e = m.exposures[0]
    cid = e.case.id
    assert type(e.case) is CaseRef and isinstance(e.case, S.CaseReport) and isinstance(e.patient, S.Patient)
    assert isinstance(e.treatment, S.Treatment) and not isinstance(e.patient, S.Treatment)
    assert type(e.patient) in REF_TYPES and isinstance(e.patient, Ref) and type(e.patient) is PatientRef
    assert e.case.title == m.facts[cid].title and kb.cases.unread() == len(kb.cases)  # held: nothing read
    age = e.patient.age  # not held: the case's model is read back, that one only
    assert kb.cases.unread() == len(kb.cases) - 1
    model = kb.cases[cid]
    assert age == model.patients[[p.id for p in model.patients].index(e.patient.id)].age
    assert e.patient.resolve() is next(p for p in model.patients if p.id == e.patient.id)
    assert e.case.resolve() is model and e.case.fingerprint() == "MCaseReport:" + cid
    assert e.treatment.fingerprint() == f"MTreatment:{e.treatment.id}"
    assert repr(e.patient) == f"<Patient of case {cid} at patients/{[p.id for p in model.patients].index(e.patient.id)}>"
    with pytest.raises(AttributeError):
        e.patient.no_such_field  # noqa: B018 - the model's own AttributeError
    patient = e.patient.resolve()
    assert e.patient == patient and patient == e.patient and e.patient in model.patients and patient in [e.patient]
    assert list(e.patient) == list(patient) and vars(e.patient) == vars(patient)
    with pytest.raises(TypeError, match="is not pickled"):
        pickle.dumps(e.patient)


def _counting_loads(monkeypatch, log: Path) -> None:
    """Note in ``log`` each model read back, in this process or a forked worker."""
    real = Pickled.load

    def load(self):
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{self.id} {os.getpid()}\n")
        return real(self)

    monkeypatch.setattr(Pickled, "load", load)


def _loads(log: Path, pids: list[int] | None = None) -> list[str]:
    """The case ids read back since the last call, with repeats; the ids of the processes that
    read them are added to ``pids``."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    log.write_text("", encoding="utf-8")
    if pids is not None:
        pids += [int(line.split()[1]) for line in lines]
    return [line.split()[0] for line in lines]


def test_a_rebuild_after_an_edit_reads_back_only_the_cases_its_pages_show(synthetic, tmp_path, monkeypatch):
    """At 10,000 cases reading every model back took 1.35 s of each rebuild, and walking them
    after the render 1.7 s; now an edit reads back the models of the pages rendered again (the
    rows beside the edited case on the pages that list it), the rest are linked unread."""
    import shutil

    import evidence.site_pages as site_pages

    root = tmp_path / "project"
    shutil.copytree(synthetic, root)
    monkeypatch.setattr(site_pages, "PAGE_ROWS", 4)  # lists on numbered pages of 4 rows
    log = tmp_path / "loads"
    _counting_loads(monkeypatch, log)

    def rebuilt() -> list[str]:
        build(load_config(root), tmp_path / "site", templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
        return _loads(log)

    rebuilt()
    home = rebuilt()  # nothing changed: the home page's newest cases, rendered every build
    assert len(home) <= 10
    case = sorted((root / "kb").glob("*.yaml"))[len(list((root / "kb").glob("*.yaml"))) // 2]
    case.write_text(case.read_text(encoding="utf-8").replace("title: ", "title: Edited, ", 1), encoding="utf-8")
    edited = set(rebuilt())  # the edited case is checked anew (its model was never a pickle), and some others are read
    assert case.stem not in edited and 1 < len(edited) < 30, sorted(edited)
    build(load_config(root), tmp_path / "fresh", templates=ROOT / "site_templates", cache=BuildCache(None))
    site, fresh = tmp_path / "site", tmp_path / "fresh"
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert [n for n in names if (site / n).read_bytes() != (fresh / n).read_bytes()] == []


def test_a_rebuild_that_renders_every_page_reads_each_model_back_about_once_in_the_workers(synthetic, tmp_path, monkeypatch):
    """A template edited: every page is rendered again, by forked workers that are replaced every
    few tasks. Each model is read back where a page that shows it is rendered: a case page reads
    its own, the lists read none (they show the facts), so each model is read about once (a
    600-case rebuild once read them 2,320 times). None is read in the build's own process but
    those its own pages show (the home page's newest cases): read there before the workers
    forked, every model was memory each worker copied as it touched it (a 10,000-case full
    render with the cache warm peaked at 1,730-1,753 MB that way, 1,412-1,422 MB without)."""
    import shutil

    import evidence.site_pages as site_pages

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "site_templates", templates)
    monkeypatch.setattr(site_pages, "PAGES_PER_WORKER", 5)
    monkeypatch.setattr(site_pages, "TRIM_FROM", 50)
    monkeypatch.setattr(site_pages, "WORKERS", 2)
    log = tmp_path / "loads"
    _counting_loads(monkeypatch, log)
    pids: list[int] = []

    def rebuilt() -> list[str]:
        build(load_config(synthetic), tmp_path / "site", templates=templates, cache=BuildCache(tmp_path / "cache"))
        return _loads(log, pids)

    rebuilt()
    assert len(rebuilt()) <= 10  # nothing changed
    base = templates / "base.html"
    base.write_text(base.read_text(encoding="utf-8").replace("</body>", "<!-- edited -->\n</body>", 1), encoding="utf-8")
    pids.clear()
    again = rebuilt()
    assert len(set(again)) == 40, sorted(again)  # every case page rendered again, each reading its model
    # Read again only by another page that shows it (a variant's page shows its carriers'
    # genotypes, the home page the newest cases): 71 reads of the 40 models; never once per
    # fresh worker (four times each).
    assert len(again) <= 2 * 40, sorted(again)
    assert pids.count(os.getpid()) <= 10 and len(set(pids) - {os.getpid()}) >= 2, pids  # in the workers


def test_a_cold_build_renders_the_evidence_table_in_its_workers_from_the_rows_it_cached(synthetic, tmp_path, monkeypatch):
    """A cold build makes every case's evidence-table rows once, in its own process, and keeps
    them in the build cache. The render workers read the rows of the pages they render from the
    cache; the build's own process lets its copies go before they fork (at 10,000 cases they
    were memory every worker copied). The site is the one a build without a cache makes."""
    import shutil

    import evidence.site_pages as site_pages
    from evidence.site_model import SiteModel

    monkeypatch.setattr(site_pages, "PAGES_PER_WORKER", 5)
    monkeypatch.setattr(site_pages, "TRIM_FROM", 50)
    monkeypatch.setattr(site_pages, "WORKERS", 2)
    monkeypatch.setattr(site_pages, "EVIDENCE_ROWS", 10)  # the table on several pages
    log = tmp_path / "rows"
    real = SiteModel.case_evidence_rows

    def rows(self, cid):
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{cid} {os.getpid()}\n")
        return real(self, cid)

    monkeypatch.setattr(SiteModel, "case_evidence_rows", rows)
    held: list[int] = []  # the rows the build's own process holds as it forks the render workers
    real_imap = site_pages.parallel_imap

    def imap(fn, items, *args, shared=None, **kwargs):
        if fn is site_pages._render_chunk:
            held.append(len(shared[0]._made_rows))
        return real_imap(fn, items, *args, shared=shared, **kwargs)

    monkeypatch.setattr(site_pages, "parallel_imap", imap)
    root = tmp_path / "project"
    shutil.copytree(synthetic, root)
    site = tmp_path / "site"
    build(load_config(root), site, templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
    made = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(cid for cid, _pid in made) == sorted({cid for cid, _pid in made}) and len(made) == 40, made  # once each
    assert {int(pid) for _cid, pid in made} == {os.getpid()}, made  # here, not again in a worker
    assert held == [0], held  # let go before the workers forked
    assert len(list((site / "evidence").glob("*.html"))) >= 2
    fresh = tmp_path / "fresh"
    build(load_config(root), fresh, templates=ROOT / "site_templates", cache=BuildCache(None))
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert [n for n in names if (site / n).read_bytes() != (fresh / n).read_bytes()] == []
