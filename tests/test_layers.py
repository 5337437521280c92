"""Issue #17: the layers of the code base, checked on the source (AST, nothing imported).

    foundation (errors, atomic_io, annotation, geometry, config/messages models, RLE)
      -> data, model (project, weights) -> loss, infer -> eval -> train, export, analysis, bench
      -> cli (every `*.cli` module, core.cli) -> app (Qt)

A module may import its own layer or a lower one. Every import counts, function-level ones too
(a lazy import hides a dependency from the import graph, not from the design). None breaks the
rule today; an exception would be listed in KNOWN_UPWARD / KNOWN_CYCLES with why (a stale entry
fails too), and a new one fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[int, tuple[str, ...]]] = [  # (rank, module prefixes); the longest prefix wins
    (0, ("core.errors", "core.atomic_io", "core.annotation", "core.bounded_input", "core.messages", "core.config",
         "core.cpu_isa", "core.project_lock", "core.grabcut", "core.scissors", "core.rle", "core.__init__", "core")),
    (1, ("core.data", "core.model", "core.weights", "core.sam")),
    (2, ("core.project", "core.proposals", "core.project_import", "core.convert", "core.image_state", "core.demo",
         "core.mask_edit")),
    (3, ("core.loss", "core.infer")),
    (4, ("core.eval",)),
    (5, ("core.train", "core.export", "core.analysis", "core.bench")),
    (6, ("core.cli", "core.__main__", "core.project_cli")),
    (7, ("app",)),
]
CLI_RANK = 6
CLI_MODULE = re.compile(r"^core\.(\w+\.)*cli$")

# (importer, imported): why it is there; each is a finding of issue #17 to be removed
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def rank(module: str) -> int | None:
    if CLI_MODULE.match(module) and module != "core.cli":
        return CLI_RANK
    best: tuple[int, int] | None = None  # (prefix length, rank)
    for r, prefixes in LAYERS:
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[0]:
                    best = (len(p), r)
    return None if best is None else best[1]


def imports_of(path: Path) -> set[str]:
    """Every `core.*` / `app.*` module imported anywhere in the file (absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from core import rle` is core.rle; `from core.eval.records import X` is core.eval.records
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in ("core", "app")}


def source_files() -> list[Path]:
    return sorted(p for d in ("core", "app") for p in (REPO / d).rglob("*.py"))


def known_modules() -> set[str]:
    return {module_name(p) for p in source_files()}


def resolve(name: str, modules: set[str]) -> str | None:
    """`core.rle.encode` -> `core.rle` (the longest real module the name starts with)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def graph() -> dict[str, set[str]]:
    modules = known_modules()
    out: dict[str, set[str]] = {}
    for path in source_files():
        me = module_name(path)
        targets = {resolve(n, modules) for n in imports_of(path)}
        out[me] = {t for t in targets if t is not None and t != me}
    return out


def test_every_module_has_a_layer():
    missing = sorted(m for m in known_modules() if rank(m) is None)
    assert not missing, f"assign these modules a layer in tests/test_layers.py: {missing}"


def test_core_never_imports_qt_or_the_app():
    bad = []
    for path in (REPO / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{module_name(path)} imports {n}" for n in names
                    if n.split(".")[0] in ("app", "PySide6", "PyQt5", "PyQt6", "shiboken6")]
    assert not bad, bad


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for me, targets in graph().items():
        for t in targets:
            rm, rt = rank(me), rank(t)
            if rm is not None and rt is not None and rt > rm:
                found.add((me, t))
    return found


def test_no_new_upward_imports():
    found = upward_imports()
    new = sorted(found - set(KNOWN_UPWARD))
    assert not new, ("imports from a higher layer (move the code down, or pass a callback): "
                     + "; ".join(f"{a} -> {b}" for a, b in new))
    stale = sorted(set(KNOWN_UPWARD) - found)
    assert not stale, f"fixed, remove from KNOWN_UPWARD: {stale}"


def cycles(g: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough for us)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[frozenset[str]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_new_import_cycles():
    g = graph()
    # a package's __init__ re-exporting its own modules is not a design cycle
    g = {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in g.items()}
    found = cycles(g)
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"fixed, remove from KNOWN_CYCLES: {stale}"


def test_the_checker_sees_a_violation():
    """The rules above can fail: an infer module importing train is upward, a cycle is found."""
    assert rank("core.infer.predictor") < rank("core.train.trainer")
    assert rank("core.export.cli") == CLI_RANK and rank("core.cli") == CLI_RANK
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_every_cli_verb_has_its_module():
    """core.cli lists each verb's module; each exists and has add_arguments + run (no "not built yet")."""
    import importlib

    from core.cli import VERBS

    for verb, (module_name, _) in VERBS.items():
        module = importlib.import_module(module_name)
        assert callable(getattr(module, f"add_{verb}_arguments", None) or getattr(module, "add_arguments", None)), verb
        assert callable(getattr(module, f"run_{verb}", None) or getattr(module, "run", None)), verb


# --------------------------------------------------------------------------- function-level imports

# Third-party packages slow to import (or optional): a module that needs one may be imported
# inside a function so that a verb, or the GUI at start, pays only for what it uses.
HEAVY_PACKAGES = {"torch", "openvino", "nncf", "tensorrt", "onnxruntime", "onnx", "matplotlib", "PySide6",
                  "pyqtgraph", "cleanlab", "ultralytics", "cv2", "scipy", "albumentations", "shapely",
                  "pycocotools"}
# module -> why its lazy imports of light modules stay for now (a stale entry fails)
KNOWN_LAZY: dict[str, str] = {}


def _module_level_imports(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for stmt in tree.body:
        for node in ast.walk(stmt) if isinstance(stmt, (ast.If, ast.Try)) else [stmt]:
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return out


def heavy_modules() -> set[str]:
    """Our modules that import a heavy package when they are imported (directly or through ours)."""
    trees = {module_name(p): ast.parse(p.read_text(encoding="utf-8"))
             for d in ("core", "app") for p in (REPO / d).rglob("*.py")}
    top = {m: _module_level_imports(t) for m, t in trees.items()}
    heavy = {m for m, imps in top.items() if any(i.split(".")[0] in HEAVY_PACKAGES for i in imps)}
    grew = True
    while grew:
        before = len(heavy)
        heavy |= {m for m, imps in top.items() if imps & heavy}
        grew = len(heavy) > before
    return heavy


def lazy_light_imports() -> dict[str, list[str]]:
    """module -> function-level imports of our modules that import nothing heavy (these belong at
    the top, where the module's dependencies are read); optional imports in try/except are fine."""
    heavy = heavy_modules()
    known = known_modules()
    found: dict[str, list[str]] = {}
    for d in ("core", "app"):
        for path in (REPO / d).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for n in ast.walk(s)}
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if id(node) in guarded:
                        continue
                    mods = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                            else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                    light = [m for m in mods if m in known and m not in heavy]
                    if light:
                        found.setdefault(module_name(path), []).extend(light)
    return found


def test_function_level_imports_only_for_heavy_packages():
    found = lazy_light_imports()
    new = {m: v for m, v in found.items() if m not in KNOWN_LAZY}
    assert not new, ("import these at the top of the module (they import nothing heavy): "
                     + "; ".join(f"{m}: {', '.join(sorted(set(v)))}" for m, v in sorted(new.items())))
    stale = sorted(set(KNOWN_LAZY) - set(found))
    assert not stale, f"fixed, remove from KNOWN_LAZY: {stale}"
