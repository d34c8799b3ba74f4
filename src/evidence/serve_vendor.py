"""YASGUI for the query page of ``evidence serve``, installed from the npm registry on first use.

The project commits no vendored JavaScript and the page loads nothing from a CDN: the first
``evidence serve`` runs ``npm install`` of a pinned ``@zazuko/yasgui`` into a cache folder that git
ignores (``.cache/vendor/`` under the project root, or ``$EVIDENCE_VENDOR_CACHE``), keeps the
bundled build (``yasgui.min.js``, ``yasgui.min.css``) and writes ``LICENSES.txt`` beside it: the
licence of every npm package the bundle was built from, as the packages ship them. Without npm,
or offline, the query page is a plain HTML form instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["YASGUI_PACKAGE", "YASGUI_VERSION", "YASGUI_FILES", "LICENSES", "CACHE_ENV", "vendor_folder", "yasgui_ready", "install_yasgui"]

log = logging.getLogger("evidence.serve")

YASGUI_PACKAGE = "@zazuko/yasgui"
YASGUI_VERSION = "4.6.2"  # pinned: a new version is a reviewed change, not a surprise
YASGUI_FILES = ("yasgui.min.js", "yasgui.min.css")
LICENSES = "LICENSES.txt"
CACHE_ENV = "EVIDENCE_VENDOR_CACHE"


def vendor_folder(root: Path) -> Path:
    """Where this version of YASGUI is (or will be) kept."""
    base = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else root / ".cache" / "vendor"
    return base / f"yasgui-{YASGUI_VERSION}"


def yasgui_ready(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (*YASGUI_FILES, LICENSES))


def _declared_licence(meta: dict) -> str:
    lic = meta.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if not lic and isinstance(meta.get("licenses"), list):
        lic = " OR ".join(str(x.get("type", x)) if isinstance(x, dict) else str(x) for x in meta["licenses"])
    return str(lic) if lic else "not declared"


def _licences(node_modules: Path) -> str:
    """Every installed package with its declared licence and the licence files it ships."""
    packages = sorted({p.parent for p in node_modules.glob("*/package.json")} | {p.parent for p in node_modules.glob("@*/*/package.json")})
    parts = [
        f"Third-party software served by `evidence serve` under /vendor/yasgui/: {YASGUI_PACKAGE} {YASGUI_VERSION}.\n"
        "yasgui.min.js and yasgui.min.css are that package's bundled build, unmodified; the bundle contains the npm\n"
        "packages below. Each entry gives the package, its version, the licence its package.json declares and the\n"
        "licence files it ships (a package that ships none is marked so).\n"
    ]
    for folder in packages:
        try:
            meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        name = meta.get("name") or folder.name
        head = f"{name} {meta.get('version', '?')}: {_declared_licence(meta)}"
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE")))
        texts = [f"--- {p.name} ---\n{p.read_text(encoding='utf-8', errors='replace').strip()}\n" for p in files]
        if not texts:
            homepage = meta.get("homepage") or ""
            texts = [f"(the package ships no licence file{'; see ' + homepage if homepage else ''})\n"]
        parts.append("=" * 78 + "\n" + head + "\n" + "\n".join(texts))
    return "\n".join(parts)


def install_yasgui(folder: Path, timeout: float = 300.0) -> str | None:
    """Install YASGUI into ``folder`` with npm; None on success, else why it could not.

    Install scripts are not run (``--ignore-scripts``): only the prebuilt files are used. Two
    servers that install at once do not clash: each works in its own temporary folder and the
    first to finish renames it into place.
    """
    if yasgui_ready(folder):
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}-", dir=folder.parent) as tmp:
        work = Path(tmp)
        cmd = [npm, "install", "--no-save", "--no-package-lock", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund",
               "--loglevel=error", "--prefix", str(work / "npm"), f"{YASGUI_PACKAGE}@{YASGUI_VERSION}"]
        try:
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"npm install {YASGUI_PACKAGE}@{YASGUI_VERSION} took more than {timeout:g} s"
        except OSError as exc:
            return f"npm could not run: {exc}"
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and "Unknown user config" not in ln]
            return f"npm install {YASGUI_PACKAGE}@{YASGUI_VERSION} failed: {' '.join(lines[-3:]) or 'exit ' + str(r.returncode)}"
        node_modules = work / "npm" / "node_modules"
        build = node_modules / "@zazuko" / "yasgui" / "build"
        missing = [n for n in YASGUI_FILES if not (build / n).is_file()]
        if missing:
            return f"{YASGUI_PACKAGE}@{YASGUI_VERSION} has no {', '.join('build/' + m for m in missing)}"
        out = work / "out"
        out.mkdir()
        for name in YASGUI_FILES:
            shutil.copyfile(build / name, out / name)
        (out / LICENSES).write_text(_licences(node_modules), encoding="utf-8")
        try:
            out.rename(folder)
        except OSError:
            if not yasgui_ready(folder):
                raise
    log.info("installed %s %s into %s", YASGUI_PACKAGE, YASGUI_VERSION, folder)
    return None
