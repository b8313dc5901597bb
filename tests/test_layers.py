"""The package's layers, checked on its import graph (every import, also those inside functions).

faces (cli, demo, study) -> workflows (the orchestrators in ``workflows/`` above pipelines, training, evaluation and
siblings) -> parts (models, diffusion, engine, world, data, vllm, enrichment, utils, errors). A part never imports a
workflow or a face, nothing below the faces imports a face, and no module imports another module's private
(``_name``) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import egoframe

ROOT = Path(egoframe.__file__).parent
FACES = ("egoframe.cli", "egoframe.demo", "egoframe.study")
WORKFLOWS = ("egoframe.pipelines", "egoframe.training", "egoframe.evaluation", "egoframe.siblings",
             "egoframe.workflows")
PARTS = ("egoframe.models", "egoframe.diffusion", "egoframe.engine", "egoframe.world", "egoframe.data",
         "egoframe.vllm", "egoframe.enrichment", "egoframe.utils", "egoframe.errors")


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


def test_only_faces_import_the_orchestrators_and_the_metrics_only_measure():
    """``egoframe.workflows`` (quickstart, recipe, reproduce, siblings compare, eval-world) runs the others;
    nothing but a face imports it, and the metrics package never trains (no import of training or siblings)."""
    bad = sorted({(a, b) for a, b, _ in _imports() if _in(b, ("egoframe.workflows",))
                  and not _in(a, FACES + ("egoframe.workflows",))})
    assert not bad, f"an orchestrator imported from below: {bad}"
    bad = sorted({(a, b) for a, b, _ in _imports() if _in(a, ("egoframe.evaluation",))
                  and _in(b, ("egoframe.training", "egoframe.siblings", "egoframe.workflows"))})
    assert not bad, f"the metrics package imports a trainer: {bad}"


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


def _module_of(path: Path) -> str:
    return ".".join(("egoframe", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")


def _names_egoframe(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and bool(node.module) and _in(node.module, ("egoframe",))
    return isinstance(node, ast.Import) and any(_in(alias.name, ("egoframe",)) for alias in node.names)


def test_lazy_internal_imports_say_why():
    """Internal imports sit in the module's top import block, where they show the import graph. One that does
    not (inside a function, or under ``if TYPE_CHECKING``) says why on its first line: ``# lazy: <reason>`` (a
    cycle, or a heavy dependency such as diffusers behind the imported module). The faces import the
    workflows inside their commands on purpose, so that ``egoframe --help`` starts fast: they are exempt."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if _in(_module_of(path), FACES):
            continue
        source = path.read_text()
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        lines = source.splitlines()
        for node in ast.walk(tree):
            if id(node) not in top and _names_egoframe(node) and "# lazy:" not in lines[node.lineno - 1]:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, ("internal imports below the top of the module without a `# lazy: <reason>` comment (move them "
                     "to the top, or say why they wait):\n" + "\n".join(bad))


def _module_level_imports(tree: ast.Module):
    """The import statements a module runs when it is imported: its body, also inside if / try / with, but not
    in functions or under ``if TYPE_CHECKING``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            type_checking = "TYPE_CHECKING" in ast.unparse(node.test)
            todo.extend(node.orelse if type_checking else node.body + node.orelse)
        elif isinstance(node, ast.Try):
            todo.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
        elif isinstance(node, ast.With):
            todo.extend(node.body)


def test_no_import_cycles_at_module_level():
    """No two modules import each other, directly or around a loop, when they are imported (lazy imports in
    functions do not count). ``from egoframe.x import y`` runs ``egoframe.x`` (its ``__init__`` for a package)
    and, when ``y`` is a module, ``egoframe.x.y``; a package a module lies in is already running."""
    modules = {_module_of(path): path for path in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        own_packages = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
        for node in _module_level_imports(ast.parse(path.read_text())):
            if not _names_egoframe(node):
                continue
            if isinstance(node, ast.ImportFrom):
                named = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                named = [a.name for a in node.names if _in(a.name, ("egoframe",))]
            for target in named:
                parts = target.split(".")
                for i in range(2, len(parts) + 1):  # importing a.b.c runs a.b first (not egoframe itself)
                    runs = ".".join(parts[:i])
                    if runs in modules and runs != module and (runs == target or runs not in own_packages):
                        edges[module].add(runs)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles at module level:\n" + "\n".join(cycles)
