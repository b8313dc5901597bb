"""The package's layers, checked on its import graph (every import, also those inside functions).

faces (cli, demo, study) -> workflows (pipelines, training, evaluation, siblings, recipe, quickstart) -> parts
(models, diffusion, world, data, vllm, enrichment, utils, errors). A part never imports a workflow or a face,
nothing below the faces imports a face, and no module imports another module's private (``_name``) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import egoframe

ROOT = Path(egoframe.__file__).parent
FACES = ("egoframe.cli", "egoframe.demo", "egoframe.study")
WORKFLOWS = ("egoframe.pipelines", "egoframe.training", "egoframe.evaluation", "egoframe.siblings",
             "egoframe.recipe", "egoframe.quickstart")
PARTS = ("egoframe.models", "egoframe.diffusion", "egoframe.world", "egoframe.data", "egoframe.vllm",
         "egoframe.enrichment", "egoframe.utils", "egoframe.errors")


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _imports():
    """(importing module, imported module, names) for every egoframe import in the package."""
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("egoframe", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _in(node.module, ("egoframe",)):
                yield module, node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _in(alias.name, ("egoframe",)):
                        yield module, alias.name, []


def test_every_module_is_in_a_layer():
    modules = {m for m, _, _ in _imports()}
    assert len(modules) > 50
    top = {m for m in modules if not _in(m, FACES + WORKFLOWS + PARTS) and m != "egoframe"}
    assert not top, f"modules outside every layer (add them to one in tests/test_layers.py): {sorted(top)}"


def test_parts_never_import_workflows_or_faces():
    bad = sorted({(a, b) for a, b, _ in _imports() if _in(a, PARTS) and _in(b, WORKFLOWS + FACES)})
    assert not bad, f"a part imports a workflow or a face: {bad}"


def test_nothing_below_the_faces_imports_a_face():
    bad = sorted({(a, b) for a, b, _ in _imports() if not _in(a, FACES) and a != "egoframe" and _in(b, FACES)})
    assert not bad, f"imports of a face from below it: {bad}"


def test_no_private_names_cross_modules():
    bad = sorted({(a, b, n) for a, b, names in _imports() for n in names
                  if n.startswith("_") and not n.startswith("__") and a != b})
    assert not bad, f"private names imported from another module: {bad}"


def test_no_private_attributes_of_other_modules():
    """``from egoframe.x import y`` then ``y._name``, or ``import egoframe.x as y`` then ``y._name``: the same
    breach as importing ``_name``, through an attribute."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to an egoframe module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and _in(node.module, ("egoframe",)):
                for alias in node.names:
                    if (ROOT / Path(*node.module.split(".")[1:]) / alias.name).with_suffix(".py").exists() or (
                            ROOT / Path(*node.module.split(".")[1:]) / alias.name / "__init__.py").exists():
                        modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _in(alias.name, ("egoframe",)) and alias.asname:
                        modules.add(alias.asname)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append((str(path.relative_to(ROOT)), f"{node.value.id}.{node.attr}"))
    assert not bad, f"private attributes of other modules: {sorted(set(bad))}"
