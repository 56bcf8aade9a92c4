"""One direction of imports in the package, read from the source (every import, deferred ones included): a module
imports only from its own layer or the layers below, and the evaluation's tasks never import the evaluation back."""

from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_cut")

# lowest first; a top-level module or package of hf_cut per name
LAYERS = [
    {"options", "packaged", "duals", "noise", "layer_sampling", "cost", "model_card", "validation"},
    {"config", "readout", "data", "models", "problem"},
    {"constrained", "constraint_callback"},
    {"trainer"},
    {"evaluation"},
    {"run_files"},
    {"cli"},
    {"studies", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def imports(path: str, module: str) -> set[str]:
    """The hf_cut modules ``module`` (dotted, at ``path``) imports, relative imports resolved."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "hf_cut" or name.startswith("hf_cut.")}


def modules():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = ["hf_cut", *os.path.relpath(path, ROOT)[:-3].split(os.sep)]
                yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_top_level_name_has_a_layer():
    names = {n[:-3] if n.endswith(".py") else n for n in os.listdir(ROOT)
             if (n.endswith(".py") and n != "__init__.py") or os.path.isfile(os.path.join(ROOT, n, "__init__.py"))}  # fmt: skip
    assert names == set(LAYER), f"no layer: {names - set(LAYER)}; gone: {set(LAYER) - names}"


def test_no_import_from_a_layer_above():
    upward = []
    for path, module in modules():
        if module == "hf_cut":  # the package's public names: the facade above everything
            continue
        own = LAYER[module.split(".")[1]]
        for target in imports(path, module):
            if target == "hf_cut" or LAYER[target.split(".")[1]] > own:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_evaluation_tasks_do_not_import_the_evaluation():
    back = [f"{module} imports {target}" for path, module in modules() if module.startswith("hf_cut.evaluation.tasks")
            for target in imports(path, module)
            if target.startswith("hf_cut.evaluation") and not target.startswith("hf_cut.evaluation.tasks")]  # fmt: skip
    assert not back, back
