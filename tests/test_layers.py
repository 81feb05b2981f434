"""Imports follow the layers drawn in docs/architecture.md (the drawing is the definition):
no module imports from a layer above its own, and only faces import the `toy` package."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hypernet"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SIDE = "toy"  # beside the stack: imports any layer below the faces, imported only by faces
FACES = "faces"


def drawn_layers() -> list[tuple[str, list[str]]]:
    """[(layer, [top-level module or package names])] as drawn, top (highest) first."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("<!-- layers:", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    layers = []
    for line in block.splitlines():
        match = re.match(r"^(\w+):\s+([\w, ]+?)(\s{2,}\(.*)?$", line)
        if match:
            layers.append((match.group(1), [name.strip() for name in match.group(2).split(",")]))
    return layers


def layer_table():
    """({module: (rank, layer)}, {layer: rank}, [side package modules]); rank 0 = lowest."""
    layers = drawn_layers()
    stack = [(name, members) for name, members in reversed(layers) if name != SIDE]
    rank = {member: (index, name) for index, (name, members) in enumerate(stack) for member in members}
    side = [member for name, members in layers if name == SIDE for member in members]
    return rank, {name: index for index, (name, _) in enumerate(stack)}, side


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved; a
    lazy-attribute table's "hypernet.x" strings count as imports too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]  # `from . import x`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"hypernet(\.\w+)+", node.value):
            found.append((node.lineno, node.value))
    return found


def top_level(module: str) -> str | None:
    """`hypernet.prompt.emphasis` -> `prompt`; None for modules outside the package (or
    for names that are not modules, like `hypernet.load`)."""
    parts = module.split(".")
    if parts[0] != "hypernet" or len(parts) < 2:
        return None
    head = PACKAGE / parts[1]
    if head.is_dir() or head.with_suffix(".py").is_file():
        return parts[1]
    return None


def package_files():
    return sorted(path for path in PACKAGE.rglob("*.py"))


def test_the_drawing_names_every_module_and_nothing_else():
    rank, _, side = layer_table()
    present = {path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0] for path in package_files()}
    present.discard("__init__")  # the package's facade, checked in violations()
    drawn = set(rank) | set(side)
    planned = {"server", "webui"}  # faces being added beside the CLI
    assert present - drawn == set(), "modules in no layer of docs/architecture.md"
    assert drawn - present - planned == set(), "layers name modules that do not exist"


def owner(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def violations():
    rank, layer_index, side = layer_table()
    problems = []
    for path in package_files():
        source = owner(path)
        if source == "__init__":  # the package's facade may name anything below the faces
            source_rank, source_layer = layer_index[FACES] - 1, "the package"
        elif source in side:
            source_rank, source_layer = layer_index[FACES] - 1, SIDE
        else:
            source_rank, source_layer = rank[source]
        for line, module in imported_modules(path):
            target = top_level(module)
            if target is None or target == source:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if target in side:
                if source_layer not in (FACES, SIDE):
                    problems.append(f"{where}: only faces may import the {SIDE} package")
                continue
            target_rank, target_layer = rank[target]
            if target_rank > source_rank:
                problems.append(f"{where}: layer {source_layer} imports from layer {target_layer} above it")
    return problems


def test_no_module_imports_from_a_layer_above_its_own():
    assert violations() == []


def test_the_check_catches_an_upward_import(monkeypatch):
    """The test itself can fail: a network-layer module importing the file layer is found."""
    fake = PACKAGE / "network.py"
    original = imported_modules

    def with_upward(path):
        found = original(path)
        return found + [(1, "hypernet.formats")] if path == fake else found

    monkeypatch.setitem(globals(), "imported_modules", with_upward)
    assert any("network.py:1 imports hypernet.formats" in problem for problem in violations())


@pytest.mark.parametrize("source,target", [("loading.py", "hypernet.toy.model"), ("attention.py", "hypernet.training")])
def test_the_check_catches_toy_and_skipping_imports(monkeypatch, source, target):
    original = imported_modules

    def with_extra(path):
        found = original(path)
        return found + [(1, target)] if path == PACKAGE / source else found

    monkeypatch.setitem(globals(), "imported_modules", with_extra)
    assert any(f"{source}:1 imports {target}" in problem for problem in violations())
