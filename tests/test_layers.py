"""The package's layers, read from its imports (ast, nothing is imported):

- the library never reaches up into the recipes: only `talkingface/recipes/`, the CLIs
  (`cli.py`, `seed_cli.py`) and the web app (`app/`) import `talkingface.recipes`;
- nothing in the package refers to the source checkout's benchmarks or `../shared`.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "talkingface"
MAY_IMPORT_RECIPES = ("recipes/", "cli.py", "seed_cli.py", "app/")


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
