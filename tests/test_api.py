"""The public API: every module says what it exports, and the package re-exports it by name."""

from __future__ import annotations

import importlib
import pkgutil

import evidence


def test_package_exports_exist():
    for name in evidence.__all__:
        assert hasattr(evidence, name), name


def test_every_module_declares_all():
    for mod in pkgutil.iter_modules(evidence.__path__):
        if mod.name.startswith("_"):
            continue
        m = importlib.import_module(f"evidence.{mod.name}")
        assert hasattr(m, "__all__"), f"evidence.{mod.name} has no __all__"
        for name in m.__all__:
            assert hasattr(m, name), f"evidence.{mod.name}.{name}"


def test_exception_tree():
    for cls in (evidence.LoadError, evidence.ValidationError, evidence.CompileError, evidence.QueryError, evidence.RenderError):
        assert issubclass(cls, evidence.EvidenceError)
