"""The package's layers, read from its imports (ast, nothing is imported):

- the library never reaches up into the recipes: only `talkingface/recipes/`, the CLIs
  (`cli.py`, `seed_cli.py`) and the web app (`app/`) import `talkingface.recipes`;
- nothing in the package refers to the source checkout's benchmarks or `../shared`;
- the package's own modules are imported at module level, so the imports show the dependency
  graph: an import of `talkingface.*` inside a function carries a `# lazy: <reason>` comment
  (on its line, or on a line of its own directly above it or above the run of imports it
  starts), the reason being one of LAZY_REASONS.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "talkingface"
MAY_IMPORT_RECIPES = ("recipes/", "cli.py", "seed_cli.py", "app/")
# Why an import of the package's own modules may wait until a function runs:
# - verb: the CLIs (cli.py, seed_cli.py) load a verb's recipe only when it runs (`talkingface --help` stays fast);
# - torch: a module that is kept torch-free (a verb's options module, the pixel metrics) reaches one that loads torch;
# - cycle: the two modules import each other (the comment names them);
# - optional extra: the module pulls a heavy optional dependency (Gradio, ...) the importer must not need.
LAZY_REASONS = ("verb", "torch", "cycle", "optional extra")
LAZY_MARKER = re.compile(r"#\s*lazy:\s*(?P<reason>[a-z ]+?)\b\s*(\(|$)")


def _module_name(path: Path, package_root: Path) -> str:
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package_root: Path = PACKAGE) -> set[str]:
    """Every module `path` imports, at any depth (in-function imports too), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, package_root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from talkingface import recipes`
    return found


def library_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if not p.relative_to(PACKAGE).as_posix().startswith(MAY_IMPORT_RECIPES)]


def test_the_library_never_imports_the_recipes():
    files = library_files()
    assert len(files) > 50  # the walk found the package
    offenders = {p.relative_to(PACKAGE).as_posix(): sorted(m for m in imported_modules(p)
                                                           if m == "talkingface.recipes"
                                                           or m.startswith("talkingface.recipes."))
                 for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_reader_sees_every_import_form(tmp_path):
    package = tmp_path / "talkingface"
    (package / "animate").mkdir(parents=True)
    probe = package / "animate" / "probe.py"
    probe.write_text("import talkingface.recipes.infer\n"
                     "from talkingface import recipes\n"
                     "from ..recipes.enhance import x\n"
                     "def f():\n    from talkingface.recipes import train\n")
    found = imported_modules(probe, package)
    assert {"talkingface.recipes.infer", "talkingface.recipes", "talkingface.recipes.enhance",
            "talkingface.recipes.train"} <= found


def test_the_package_does_not_refer_to_the_source_checkout():
    """No paths into the checkout around the package (`REPO / "benchmarks"`, `../shared`,
    `REPO / "run_talkingface.py"`): the wheel has none of them. Mentions in docstrings,
    comments and the seed CLI's program name are fine."""
    checkout = {"shared", "run_talkingface.py", "benchmarks", "tests", "docs"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                parts = [side.value for side in (node.left, node.right)
                         if isinstance(side, ast.Constant) and isinstance(side.value, str)]
                found += [f"{where}:{node.lineno}: / {part!r}" for part in parts if part in checkout]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "../shared" in node.value:
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert found == []


def test_data_does_not_import_preprocess():
    """preprocess/ reads and writes datasets through data/; data/ never needs preprocessing."""
    offenders = {p.relative_to(PACKAGE).as_posix(): sorted(m for m in imported_modules(p)
                                                           if m.startswith("talkingface.preprocess"))
                 for p in sorted((PACKAGE / "data").rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


# --------------------------------------------------------------------------- in-function imports
def _imports_own_package(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name == "talkingface" or alias.name.startswith("talkingface.") for alias in node.names)
    return bool(node.level) or node.module == "talkingface" or (node.module or "").startswith("talkingface.")


def _marker(line: str) -> str | None:
    """The reason a `# lazy: <reason> (...)` comment gives, or None when the line has none."""
    found = LAZY_MARKER.search(line)
    return found.group("reason").strip() if found else None


def lazy_imports(path: Path) -> list[tuple[int, str | None]]:
    """(line, reason or None) of every import of `talkingface.*` inside a function of `path`. A reason is
    read from a `# lazy:` comment on the statement's lines, or on a comment line directly above it or
    above the first of the run of import statements it belongs to."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []

    def above(lineno: int) -> str | None:
        previous = lines[lineno - 2].strip() if lineno >= 2 else ""
        return _marker(previous) if previous.startswith("#") else None

    def visit(node: ast.AST, in_function: bool) -> None:
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            run_reason = None  # the last marker above a statement of the current run of imports
            for i, child in enumerate(block):
                if not isinstance(child, (ast.Import, ast.ImportFrom)):
                    continue
                if i == 0 or not isinstance(block[i - 1], (ast.Import, ast.ImportFrom)):
                    run_reason = None
                run_reason = above(child.lineno) or run_reason
                if in_function and _imports_own_package(child):
                    own = [_marker(line) for line in lines[child.lineno - 1:child.end_lineno]]
                    found.append((child.lineno, next((r for r in own if r), None) or run_reason))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(text, filename=str(path)), False)
    return found


def test_the_package_imports_its_own_modules_at_module_level():
    """Each in-function import of `talkingface.*` says why it waits (`# lazy: <reason>`, LAZY_REASONS)."""
    unmarked, unknown, marked = [], [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for line, reason in lazy_imports(path):
            if reason is None:
                unmarked.append(f"{where}:{line}")
            elif reason not in LAZY_REASONS:
                unknown.append(f"{where}:{line}: {reason!r}")
            else:
                marked += 1
    assert unmarked == [], "import these at module level, or mark them `# lazy: <reason>` (see LAZY_REASONS)"
    assert unknown == []
    assert marked > 0  # the walk found the CLIs' lazy verbs


def test_the_lazy_import_reader_sees_every_form(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from talkingface.errors import DataError\n"  # module level: fine
                     "import numpy\n"
                     "def f():\n"
                     "    import json\n"  # not the package's own: fine
                     "    from talkingface.utils import video\n"  # 5: unmarked
                     "    # lazy: verb (a recipe)\n"
                     "    from talkingface.recipes.infer import InferOptions\n"  # 7: marked above
                     "    from talkingface.recipes.train import (TrainOptions,\n"  # 8: in the marked run
                     "                                          run_training)\n"
                     "    x = 1\n"
                     "    from . import sibling\n"  # 11: relative, unmarked
                     "    import talkingface.cli  # lazy: cycle (a <-> b)\n"  # 12: marked on its line
                     "    if x:\n"
                     "        import talkingface.app.server  # lazy: because\n"  # 14: an unknown reason
                     "class C:\n"
                     "    def m(self):\n"
                     "        from talkingface import metrics\n")  # 17: a method, unmarked
    assert lazy_imports(probe) == [(5, None), (7, "verb"), (8, "verb"), (11, None), (12, "cycle"),
                                   (14, "because"), (17, None)]
