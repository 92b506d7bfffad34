"""The agent's folders are its architecture: data flows one way, kernel -> pipeline -> export/metrics,
and no module imports a module that (directly or not) imports it back.

Read with `ast` from the source of agent/, probes/ and bcgov/, nothing imported. The rules:

- No import cycles among modules, counting module-level imports (those inside `if`/`try` at module
  level too) and leaving out `if TYPE_CHECKING:` blocks, which never run.
- Direction, counting every import a module makes (a function-level import is the same dependency,
  deferred), except `if TYPE_CHECKING:` blocks (annotations only):
  - agent.kernel (tracefs, loading, rings, maps) imports none of agent.pipeline, agent.export,
    agent.metrics: it hands records up and never knows who reads them;
  - agent.export (span model, queue, writers, event log) imports none of agent.pipeline,
    agent.kernel, agent.metrics, agent.identity: it ships what it is given;
  - agent.identity imports none of agent.pipeline, agent.export, agent.metrics, agent.kernel: it
    answers "whose is this cgroup/address" for whoever asks;
  - agent.selfcost imports none of agent.pipeline, agent.export: it measures, others decide.
  - agent.redaction (text and URL-credential masking) imports nothing else of the agent: every
    layer masks with the same rules.
- probes/ is the probes' declarations and handlers. A handler turns a record into an event and the
  event into its outputs, so it may use what those outputs are made of and nothing else of the
  agent: the span model and JSON text fragments (agent.export.span_model, agent.export.spans,
  agent.export.json_text) and the redaction it must apply before text leaves (agent.redaction.redact).
  Anything else (the runtime, loaders, collectors, identity) reaches a handler through its context.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "probes", "bcgov")

FORBIDDEN = {
    "agent.kernel": ("agent.pipeline", "agent.export", "agent.metrics"),
    "agent.export": ("agent.pipeline", "agent.kernel", "agent.metrics", "agent.identity"),
    "agent.identity": ("agent.pipeline", "agent.export", "agent.metrics", "agent.kernel"),
    "agent.selfcost": ("agent.pipeline", "agent.export"),
    # the masking rules every layer applies (exec lines, exporter endpoints, CLI, governor): a leaf
    "agent.redaction": ("agent.pipeline", "agent.export", "agent.metrics", "agent.identity", "agent.kernel",
                        "agent.selfcost", "agent.runtime", "agent.config", "agent.summary"),
}
# What a probe's handler may import from the agent (see the module docstring).
PROBES_MAY_IMPORT = ("agent.export.span_model", "agent.export.spans", "agent.export.json_text", "agent.redaction.redact")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the checked packages: dotted name -> file."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body: Iterable[ast.stmt], module_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements in `body`, never those under `if TYPE_CHECKING:`; with `module_level_only`,
    not those inside functions or classes either (they run later, or not at all)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _import_nodes(node.body, module_level_only)
            yield from _import_nodes(node.orelse, module_level_only)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not module_level_only:
                yield from _import_nodes(node.body, module_level_only)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _import_nodes([n for n in inner if isinstance(n, ast.stmt | ast.ExceptHandler)], module_level_only)
            if isinstance(node, ast.ExceptHandler):
                yield from _import_nodes(node.body, module_level_only)


def _resolve(name: str) -> str | None:
    """The checked module `name` denotes (a module, or the package a name is imported from), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str, module_level_only: bool) -> set[str]:
    """The checked modules `module` imports (itself and its own parent packages left out)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(tree.body, module_level_only):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..y import z
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for t in targets:
            resolved = _resolve(t)
            if resolved and resolved != module and not module.startswith(resolved + "."):
                out.add(resolved)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles() -> None:
    graph = {m: imports(m, module_level_only=True) for m in MODULES}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        " <-> ".join(c) + ": " + "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c) for c in cycles)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_data_flows_one_way(layer: str) -> None:
    wrong = sorted(f"{m} imports {t}" for m in MODULES if _in(m, layer)
                   for t in imports(m, module_level_only=False) if any(_in(t, f) for f in FORBIDDEN[layer]))
    assert not wrong, f"{layer} must import none of {', '.join(FORBIDDEN[layer])}:\n" + "\n".join(wrong)


def test_probes_import_only_what_a_handler_needs() -> None:
    wrong = sorted(f"{m} imports {t}" for m in MODULES if _in(m, "probes")
                   for t in imports(m, module_level_only=False) if _in(t, "agent") and t not in PROBES_MAY_IMPORT)
    assert not wrong, f"probes/ may import only {', '.join(PROBES_MAY_IMPORT)} of the agent:\n" + "\n".join(wrong)


def test_the_reader_sees_what_it_checks() -> None:
    """Control: the reader finds a known module-level import, a function-level one, and skips a
    TYPE_CHECKING one (so an empty result above means no such import, not a blind reader)."""
    assert "agent.kernel.tracefs" in imports("agent.kernel.preflight", module_level_only=True)
    assert {"agent.export.otlp_transport", "agent.export.rotating_file"} <= imports("agent.export.spans", module_level_only=True)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
