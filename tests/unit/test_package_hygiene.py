"""Hygiene of the `liss` package, read from its source (nothing of liss is imported here):
no import cycles, and no private torch API.

Import cycles are looked for at two granularities:
* modules: the imports a module runs when it is imported (module level, including inside
  `if`/`try`/`with` and class bodies; not inside functions, not under `if TYPE_CHECKING:`).
  `from liss.a import b` is an edge to the submodule `liss.a.b` when there is one, else to
  `liss.a`; importing `liss.a.b` also initialises the package `liss.a` first, so that is an
  edge too, except to the importer's own enclosing packages (initialised before it anyway).
* top-level subpackages (`liss.train`, `liss.eval`, ...; top-level modules stand for
  themselves): the same edges, collapsed. Two subpackages that need each other cannot be
  layered, even when no single chain of modules loops yet.

Private torch API: `torch._x` anywhere in an attribute chain (`torch._utils`,
`torch.cpu._is_...`), `getattr`/`hasattr(torch..., "_x")`, `from torch... import _x`, and, by
name, private members that reading the source cannot tie to torch (a GradScaler's
`._found_inf...`, `_is_avx512...`). Comments and docstrings do not count; other strings do.

Both checks fail today on purpose, until liss is fixed; the checkers themselves are tested
on small graphs and sources at the end of this file.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from collections import defaultdict, deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "liss"

Graph = dict[str, set[str]]
Sites = dict[tuple[str, str], list[str]]  # (importer, imported) -> ["liss/x.py:12", ...]


# --------------------------------------------------------------------------- the import graph


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (packages by their __init__)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def executed_imports(node: ast.AST):
    """The import statements under `node` that run when the module is imported."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue  # runs when called, not when imported
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from executed_imports(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from executed_imports(child)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(stmt: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
                     known: set[str]) -> set[str]:
    """The package modules an import statement of `importer` initialises."""
    targets = set()
    if isinstance(stmt, ast.Import):
        targets = {alias.name for alias in stmt.names}
    else:
        if stmt.level:
            package = importer.split(".")
            if not is_package:
                package = package[:-1]
            base_parts = package[:len(package) - (stmt.level - 1)]
            base = ".".join([*base_parts, *([stmt.module] if stmt.module else [])])
        else:
            base = stmt.module or ""
        for alias in stmt.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in known else base)
    found = set()
    for target in targets:
        found |= {target, *_ancestors(target)}
    mine = {importer, *_ancestors(importer)}
    return {t for t in found if t in known and t not in mine}


def import_graph(package_dir: Path) -> tuple[Graph, Sites]:
    """Module -> the modules it initialises when imported, and where each edge is written."""
    files = module_names(package_dir)
    known = set(files)
    graph: Graph = {name: set() for name in files}
    sites: Sites = defaultdict(list)
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for stmt in executed_imports(tree):
            for target in sorted(imported_modules(stmt, name, path.name == "__init__.py",
                                                  known)):
                graph[name].add(target)
                sites[(name, target)].append(
                    f"{path.relative_to(package_dir.parent)}:{stmt.lineno}")
    return graph, dict(sites)


def collapse(graph: Graph, sites: Sites, depth: int = 2) -> tuple[Graph, Sites]:
    """The graph between top-level subpackages (names cut to `depth` parts)."""
    def unit(name: str) -> str:
        return ".".join(name.split(".")[:depth])

    coarse: Graph = {unit(n): set() for n in graph}
    coarse_sites: Sites = defaultdict(list)
    for src, targets in graph.items():
        for dst in targets:
            if unit(src) != unit(dst):
                coarse[unit(src)].add(unit(dst))
                coarse_sites[(unit(src), unit(dst))] += sites.get((src, dst), [])
    return coarse, {edge: sorted(set(where), key=_site_order)
                    for edge, where in coarse_sites.items()}


def _site_order(site: str) -> tuple[str, int]:
    path, line = site.rsplit(":", 1)
    return path, int(line)


# --------------------------------------------------------------------------- cycles


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in sorted order."""
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

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
            components.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(components)


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component that has one: the shortest cycle through
    the component's first node, written [a, ..., a]. Empty when the graph is acyclic."""
    cycles = []
    for component in strongly_connected(graph):
        start, inside = component[0], set(component)
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        parent: dict[str, str] = {}
        queue = deque([start])
        while queue:  # breadth first inside the component, back to start
            v = queue.popleft()
            if start in graph.get(v, ()):
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                cycles.append([*reversed(path), start])
                break
            for w in sorted(graph.get(v, ())):
                if w in inside and w not in parent and w != start:
                    parent[w] = v
                    queue.append(w)
    return cycles


def describe(cycles: list[list[str]], sites: Sites) -> str:
    lines = []
    for cycle in cycles:
        lines.append("  " + " -> ".join(cycle))
        for src, dst in itertools.pairwise(cycle):
            lines.append(f"    {src} -> {dst}: {', '.join(sites.get((src, dst), ['?']))}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- private torch API

PRIVATE_TORCH = [
    re.compile(r"\btorch(?:\.\w+)*?\._[A-Za-z]\w*(?:\.\w+)*"),
    re.compile(r"""\b(?:get|has|set)attr\(\s*torch(?:\.\w+)*\s*,\s*(['"])_[A-Za-z]\w*\1"""),
    re.compile(r"\._found_inf\w*"),  # GradScaler's per-device inf bookkeeping
    re.compile(r"\b_is_avx512\w*"),
]


def code_only(source: str) -> list[str]:
    """The source lines with comments and docstrings (string statements) blanked."""
    lines = source.splitlines()

    def column(row: int, byte_offset: int) -> int:  # ast counts UTF-8 bytes, not characters
        return len(lines[row - 1].encode()[:byte_offset].decode(errors="ignore"))

    spans = [(t.start, t.end) for t in tokenize.generate_tokens(io.StringIO(source).readline)
             if t.type == tokenize.COMMENT]
    spans += [((n.lineno, column(n.lineno, n.col_offset)),
               (n.end_lineno, column(n.end_lineno, n.end_col_offset)))
              for n in ast.walk(ast.parse(source))
              if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
              and isinstance(n.value.value, str)]
    for (row, col), (end_row, end_col) in spans:
        for r in range(row, end_row + 1):
            line = lines[r - 1]
            a = col if r == row else 0
            b = end_col if r == end_row else len(line)
            lines[r - 1] = line[:a] + " " * (b - a) + line[b:]
    return lines


def private_torch_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every private torch API use in a module's source."""
    found = {}
    for number, line in enumerate(code_only(source), start=1):
        for rule in PRIVATE_TORCH:
            for match in rule.finditer(line):
                found.setdefault(number, match.group(0))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            private = [a.name for a in node.names
                       if a.name.startswith("_") and not a.name.startswith("__")]
            if private:
                found.setdefault(node.lineno, f"from {node.module} import {private[0]}")
    return sorted(found.items())


# --------------------------------------------------------------------------- the checks


def test_no_import_cycles() -> None:
    graph, sites = import_graph(PACKAGE)
    assert graph.get("liss.train.trainer"), "nothing was read"
    coarse, coarse_sites = collapse(graph, sites)
    problems = []
    if cycles := find_cycles(graph):
        problems.append(f"module import cycles:\n{describe(cycles, sites)}")
    if cycles := find_cycles(coarse):
        problems.append(f"subpackage import cycles:\n{describe(cycles, coarse_sites)}")
    assert not problems, "\n".join(problems)


def test_no_private_torch_api() -> None:
    uses = [f"{path.relative_to(REPO)}:{line}: {what}"
            for path in sorted(PACKAGE.rglob("*.py"))
            for line, what in private_torch_uses(path.read_text())]
    assert not uses, "private torch API in liss/:\n" + "\n".join(uses)


# --------------------------------------------------------------------------- the checkers


def test_find_cycles_on_small_graphs() -> None:
    assert find_cycles({}) == []
    assert find_cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []  # diamond
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert find_cycles({"a": {"a"}, "b": set()}) == [["a", "a"]]
    # a cycle with a tail into it and one out of it; targets need not be keys
    assert find_cycles({"t": {"b"}, "a": {"b"}, "b": {"c"}, "c": {"a", "z"}}) == [
        ["a", "b", "c", "a"]]
    # two components: each reported once, shortest cycle through its first node
    assert find_cycles({"p": {"q"}, "q": {"r"}, "r": {"p", "q"},
                        "x": {"y"}, "y": {"x"}}) == [["p", "q", "r", "p"], ["x", "y", "x"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}) == [["a", "c", "a"]]


def test_import_graph_reads_what_runs_at_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\nimport os\n",
        "b.py": ("from typing import TYPE_CHECKING\n"
                 "if TYPE_CHECKING:\n    from pkg import a\nelse:\n    import pkg.e\n"
                 "def later():\n    from pkg import a\n"),
        "e.py": "class K:\n    from pkg.sub import c\n",
        "d.py": "try:\n    import pkg.sub.c\nexcept ImportError:\n    pass\n",
        "sub/__init__.py": "from .c import X\n",
        "sub/c.py": "from .. import a\nfrom ..b import something\nX = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph, sites = import_graph(pkg)
    assert graph == {
        "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.e"},
        "pkg.e": {"pkg.sub", "pkg.sub.c"}, "pkg.d": {"pkg.sub", "pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a", "pkg.b"}}
    assert sites[("pkg.b", "pkg.e")] == ["pkg/b.py:5"]
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.e", "pkg.sub.c", "pkg.a"]]
    assert "pkg.sub.c -> pkg.a: pkg/sub/c.py:1" in describe(cycles, sites)
    coarse, _ = collapse(graph, sites)
    assert coarse == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.e"}, "pkg.e": {"pkg.sub"},
                      "pkg.d": {"pkg.sub"}, "pkg.sub": {"pkg.a", "pkg.b"}, "pkg": set()}


def test_private_api_scan_on_small_sources() -> None:
    source = '''"""A docstring may name torch._utils and ._found_inf freely."""
import torch  # a comment may too: torch._dynamo
from torch._dynamo import config
from torch.amp import _private, GradScaler
x = torch.cpu._is_avx512_bf16_supported()
y = getattr(torch.cpu, "_is_amx_tile_supported", None)
z = scaler._found_inf_per_device(opt)
def f():
    """Nor in a function's docstring: torch._C."""
    return torch.__version__, torch.nn.functional.relu, torch.Tensor
'''
    assert private_torch_uses(source) == [
        (3, "torch._dynamo"), (4, "from torch.amp import _private"),
        (5, "torch.cpu._is_avx512_bf16_supported"),
        (6, 'getattr(torch.cpu, "_is_amx_tile_supported"'), (7, "._found_inf_per_device")]
