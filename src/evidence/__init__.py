"""evidence: a curated literature-evidence knowledge base.

The pipeline, one module a stage: :mod:`~evidence.load` (YAML with positions) ->
:mod:`~evidence.validate` -> :mod:`~evidence.compile` (RDF; :mod:`~evidence.graph`: the evidence network, also as networkx)
-> :mod:`~evidence.query` (SPARQL) -> :mod:`~evidence.render` (site). :func:`build` runs them all.
"""

from .compile import Compiled, compile_kb
from .config import Config, load_config
from .errors import CompileError, Diagnostic, EvidenceError, LoadError, QueryError, RenderError, ValidationError
from .graph import evidence_graph, evidence_network, related_cases
from .pipeline import build, compile_checked, load_and_validate
from .query import QueryResult, format_result, run_query
from .validate import Kb, validate_kb

__all__ = [
    "Compiled",
    "CompileError",
    "Config",
    "Diagnostic",
    "EvidenceError",
    "Kb",
    "LoadError",
    "QueryError",
    "QueryResult",
    "RenderError",
    "ValidationError",
    "build",
    "compile_checked",
    "compile_kb",
    "evidence_graph",
    "evidence_network",
    "format_result",
    "load_and_validate",
    "load_config",
    "related_cases",
    "run_query",
    "validate_kb",
]
__version__ = "0.1.0"
