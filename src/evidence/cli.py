"""The ``evidence`` command line.

Exit codes: 0 success; 1 the kb or the query has problems (each one is printed);
2 the command line is wrong; 3 an internal error (a bug: please report it); 130 interrupted
(Ctrl-C); killed by SIGTERM (143 in a shell) once it has cleaned up, see :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path

import pyoxigraph as ox

from . import interrupts
from .config import SOURCE_TEXTS_ENV, load_config
from .errors import FILE_ERRNOS, RESOURCE_ERRNOS, Diagnostic, EvidenceError, QueryError, Terminated, WorkerError, os_error_text
from .folders import write_whole

__all__ = ["main"]

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL, EXIT_RESOURCES, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # returned only when a caller's own SIGTERM handler let the process live


def _print_diagnostics(diags: list[Diagnostic], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([d.as_dict() for d in diags], indent=1, ensure_ascii=False))
        return
    for d in diags:
        print(d.github() if fmt == "github" else d.text())


def _summary(diags: list[Diagnostic], files: int) -> str:
    e = sum(1 for d in diags if d.level == "error")
    w = sum(1 for d in diags if d.level == "warning")
    return f"{e} error{'s' if e != 1 else ''}, {w} warning{'s' if w != 1 else ''} in {files} file{'s' if files != 1 else ''}"


def _expand_paths(paths: list[str]) -> list[Path]:
    from .load import yaml_files_under  # as every command's module, imported when it runs

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(yaml_files_under(path))
        else:
            out.append(path)
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    from .cache import BuildCache
    from .load import real_path
    from .validate import validate_kb

    config = load_config(args.root)
    paths = _expand_paths(args.paths)
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        what = "a symbolic link to nothing, or a loop of links" if os.path.lexists(p) else "no such file"
        print(f"{p}:1:1: error: {what}", file=sys.stderr)
    paths = [p for p in paths if p.exists()]
    # The build's cache (keyed by content, see evidence.cache): a file checked before, unchanged,
    # is not checked again, and its model is not read back (evidence.cases). At 10,000 cases this
    # took 12 s every time without it, 1.4 s with it.
    cache = BuildCache.for_root(config.root)
    try:
        kb = validate_kb(config, paths, cache)
    finally:
        cache.tidy()
    diags = kb.diagnostics
    if args.paths:  # what was named: its files, and for a folder, anything under it (a folder the kb does not read)
        wanted = {str(real_path(p)) for p in paths}
        folders = [real_path(Path(p)) for p in args.paths if Path(p).is_dir()]

        named_files = [real_path(p) for p in paths]

        def named(d) -> bool:  # about a named file, or under a named folder, or a folder (not read) that holds a named file
            found = {real_path(config.root / d.path), real_path(Path(d.path))}
            return any(str(f) in wanted or any(f == top or top in f.parents for top in folders) or any(f in n.parents for n in named_files)
                       for f in found)

        diags = [d for d in diags if named(d)]
    _print_diagnostics(diags, args.format)
    files = len(paths) if args.paths else len({f.display for f in kb.files.values()} | {d.path for d in diags})
    print(_summary(diags, files), file=sys.stderr)
    if config.texts_dir() is None:  # allowed (a contributor may not have them), and said: the check runs where they are
        print(f"note: no source texts at {config.texts_wanted()}: quotes were not checked against them "
              f"(set {SOURCE_TEXTS_ENV} to the folder of texts)", file=sys.stderr)
    return EXIT_PROBLEMS if missing or any(d.level == "error" for d in diags) else EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import build

    config = load_config(args.root)
    out = Path(args.out) if args.out else config.root / "_site"
    report = build(config, out)
    times = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items())
    print(f"built {out}: {report.cases} cases, {report.patients} patients, {report.quads} quads ({times})", file=sys.stderr)
    return EXIT_OK


def _compiled(args: argparse.Namespace):
    from .pipeline import compiled_with_cache

    return compiled_with_cache(load_config(args.root))


def cmd_export(args: argparse.Namespace) -> int:
    from .export import serialize

    data = serialize(_compiled(args), args.format)
    if args.out:
        write_whole(args.out, data)
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def _param(compiled, text: str) -> tuple[str, ox.NamedNode | ox.Literal]:
    if "=" not in text:
        raise QueryError(f"--param {text!r}: expected NAME=VALUE, e.g. --param gene=TREX1")
    name, value = text.split("=", 1)
    name = name.strip().lstrip("?$")
    if value.startswith("<") and value.endswith(">"):
        return name, ox.NamedNode(value[1:-1])
    if value.startswith(("http://", "https://")):
        return name, ox.NamedNode(value)
    prefixes = compiled.ns.prefixes()
    if ":" in value and value.split(":", 1)[0] in prefixes:
        p, local = value.split(":", 1)
        return name, ox.NamedNode(prefixes[p] + local)
    return name, ox.Literal(value)


def _query_text(config, query: str) -> str:
    """A SPARQL string, a .rq file, or the name of a library query."""
    from .library import find_query
    from .query import read_query

    if query.endswith(".rq") or Path(query).is_file() or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", query):
        return read_query(query)
    return find_query(config.kb_dir / "queries", query).text


def cmd_query(args: argparse.Namespace) -> int:
    from .compile import Compiled
    from .namespaces import Namespaces
    from .query import format_result, run_query, run_remote

    config = load_config(args.root)
    if args.list:
        from .library import load_library

        for q in load_library(config.kb_dir / "queries"):
            params = ", ".join(p.name for p in q.params) or "-"
            print(f"{q.name:32} {q.title}  [params: {params}]")
        return EXIT_OK
    if not args.query:
        raise QueryError("give a SPARQL query, a .rq file or a library query name (see --list)")
    text = _query_text(config, args.query)
    if args.endpoint:
        ns = Namespaces(config.base_iri)
        params = dict(_param(Compiled(ns=ns), p) for p in args.param)
        result = run_remote(args.endpoint, text, ns.prefixes(), params, timeout=args.timeout)
        sys.stdout.write(format_result(result, args.format, ns.prefixes()))
        return EXIT_OK
    compiled = _compiled(args)
    params = dict(_param(compiled, p) for p in args.param)
    result = run_query(compiled, text, params, allow_service=args.allow_service)
    sys.stdout.write(format_result(result, args.format, compiled.ns.prefixes()))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .schemafiles import stale_schemas, write_schemas

    config = load_config(args.root)
    folder = config.root / "schema"
    if args.check:
        stale = stale_schemas(folder)
        if stale:
            print(f"stale JSON Schema file(s) in {folder}: {', '.join(stale)}; run `evidence schema` to regenerate them", file=sys.stderr)
            return EXIT_PROBLEMS
        print("JSON Schema files are up to date", file=sys.stderr)
        return EXIT_OK
    for p in write_schemas(folder):
        print(p)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="evidence", description="A curated literature-evidence knowledge base: validate, build, export and query it.",
                                 epilog="Exit codes: 0 ok; 1 problems in the kb or query (all printed); 2 bad command line; 3 internal error.")
    ap.add_argument("--root", default=None, help="the project folder holding evidence.toml (default: the nearest one above the current folder)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check kb files and report every problem",
                       description="Check the kb: YAML syntax, the schema, references, identifiers, HGVS, units, durations, plausible values, "
                                   "unique ids and quotes against the source texts. Prints every problem as path:line:col: level: message.")
    v.add_argument("paths", nargs="*", help="files or folders to report on (default: the whole kb); they are checked in the context of the kb")
    v.add_argument("--format", choices=["text", "github", "json"], default="text", help="text (default), GitHub Actions annotations, or JSON")
    v.set_defaults(func=cmd_validate)

    b = sub.add_parser("build", help="validate, compile and write the site and exports", description="Validate, compile, check the graph against its SHACL shapes, and write the exports and site into --out, atomically.")
    b.add_argument("--out", help="output folder (default: _site)")
    b.set_defaults(func=cmd_build)

    e = sub.add_parser("export", help="write the compiled graph in one format", description="Write the compiled graph to stdout or --out.")
    e.add_argument("--format", choices=["ttl", "nt", "nq", "trig", "jsonld", "graphml"], default="ttl", help="ttl (default), nt, nq, trig, jsonld or graphml")
    e.add_argument("--out", help="file to write (default: stdout)")
    e.set_defaults(func=cmd_export)

    q = sub.add_parser("query", help="run a SPARQL query over the compiled graph",
                       description="Run SPARQL over the union of all graphs, or the graphs its FROM names (or on --endpoint). Prefixes ev:, rdf:, rdfs:, dcterms:, prov:, bibo:, fabio:, schema:, skos:, obo:, xsd: are predeclared. "
                                   "Parameters bind SELECT variables as RDF terms: locally through pyoxigraph substitutions, remotely through a trailing VALUES clause.",
                       epilog="examples:\n  evidence query --list\n  evidence query drugs-by-gene --param gene=TREX1\n  evidence query kb/queries/gaps.rq --format csv\n"
                              "  evidence query drugs-by-gene --endpoint http://127.0.0.1:7878/query",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("query", nargs="?", help="a SPARQL query string, a .rq file, or a library query name (see --list)")
    q.add_argument("--list", action="store_true", help="list the query library (kb/queries/*.rq) with titles and parameters")
    q.add_argument("--format", choices=["table", "csv", "tsv", "json", "xml", "ttl", "nt", "jsonld"], default="table",
                   help="SELECT/ASK: table (default), csv, tsv, json or xml (SPARQL 1.1 Results); CONSTRUCT/DESCRIBE: ttl (default), nt or jsonld")
    q.add_argument("--endpoint", metavar="URL", help="run the query on a remote SPARQL 1.1 endpoint instead of the local graph (prefixes are declared for it)")
    q.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a remote endpoint (default 60)")
    q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind ?NAME to VALUE as an RDF term (an IRI if <...>, http(s):// or a known prefix; else a literal); repeatable")
    q.add_argument("--allow-service", action="store_true",
                   help="let the query use SERVICE (federated query: this machine fetches from the endpoints it names); refused otherwise")
    q.set_defaults(func=cmd_query)

    s = sub.add_parser("schema", help="write (or --check) the JSON Schema files generated from the models")
    s.add_argument("--check", action="store_true", help="only check that schema/ is up to date")
    s.set_defaults(func=cmd_schema)

    # Commands that live in their own modules add their parsers themselves:
    # each module has add_commands(sub), which calls sub.add_parser(...).set_defaults(func=...).
    import importlib

    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"evidence.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"evidence.{module}":
                raise
            continue
        mod.add_commands(sub)
    return ap


# Modules that contribute subcommands (see parser()).
COMMAND_MODULES = ("serve", "authoring", "diff")


def main(argv: list[str] | None = None) -> int:
    """Run one command. Ctrl-C and SIGTERM unwind it (``KeyboardInterrupt``,
    :class:`~evidence.errors.Terminated`, see :mod:`evidence.interrupts`): a build removes its
    unfinished folder and stops its workers, the server its temporary folder. With Python's default
    the process died at once on SIGTERM and left them behind. Once unwound, a SIGTERM still ends the
    process by the signal, so that whoever sent it sees it obeyed."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        return _run(argv)
    interrupts.install()
    try:
        return _run(argv)
    except Terminated:
        print("terminated", file=sys.stderr)
    finally:
        interrupts.uninstall()
        interrupts.forget_escaped()  # an interrupt handled above is not one that escaped (exit 130, not killed by SIGINT)
    sys.stderr.flush()
    signal.raise_signal(signal.SIGTERM)  # the default handler (unless the caller had its own): the process ends here
    return EXIT_TERMINATED


def _run(argv: list[str] | None) -> int:
    try:
        args = parser().parse_args(argv)  # imports the commands' modules: a Ctrl-C may land here too
        return args.func(args)
    except WorkerError as exc:  # the machine's shortage, not the kb's problem: a code of its own, for scripts that retry
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_RESOURCES
    except EvidenceError as exc:
        for d in exc.diagnostics:
            print(d.text(), file=sys.stderr)
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:
        if exc.errno in RESOURCE_ERRNOS:  # the machine's shortage, as a worker that cannot start
            print(f"error: {os_error_text(exc)}", file=sys.stderr)
            return EXIT_RESOURCES
        if exc.errno in FILE_ERRNOS:
            print(f"error: {os_error_text(exc)}", file=sys.stderr)
            return EXIT_PROBLEMS
        return _internal(exc)  # not what a user can set right (a file that exists where none should): a bug
    except Exception as exc:
        return _internal(exc)


def _internal(exc: BaseException) -> int:
    """Never a traceback for a user: say what broke and how to report it."""
    print(f"internal error: {type(exc).__name__}: {exc}\nThis is a bug in evidence; please report it with the command you ran.", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
