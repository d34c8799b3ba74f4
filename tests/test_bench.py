"""The benchmark scripts run: bench/site_bench.py had broken unnoticed (render_site came to return
the site's file names, not paths), since no test ran it."""

from __future__ import annotations

import sys
from pathlib import Path

from evidence.cache import BuildCache
from evidence.config import load_config
from evidence.pipeline import build

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_benchmark_renders_every_page_a_build_makes(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import site_bench
    import synth

    root = tmp_path / "project"
    synth.generate(root, 12, seed=2)
    got = site_bench.bench("synthetic 12", root, 1, False, False)
    site = tmp_path / "site"
    build(load_config(root), site, templates=ROOT / "site_templates", cache=BuildCache(None))
    pages = [p for p in site.rglob("*.html") if not p.relative_to(site).as_posix().startswith("pagefind/")]
    assert got["cases"] == 12 and got["pages"] == len(pages), (got["pages"], len(pages))
    assert got["render"] > 0 and got["size_mb"] > 0 and got["steps"].get("site cases", -1) >= 0
