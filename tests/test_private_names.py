"""hf-cut touches no private name of TRL, transformers, accelerate or PEFT: their internals change at every minor
release that ``trl<2`` and ``transformers<6`` admit.

Three ways of touching one are found, in every module of the package:

- reading or writing an attribute, or calling a method, whose name begins with one underscore and that hf-cut does
  not define itself (``trainer._prepare_inputs``, ``config._name_or_path``, ``getattr(x, "_metrics")``);
- defining, in a class with a base from one of those packages, a method or attribute that a base defines or sets
  (``def _save``, ``self._metrics = …``): an override of, or a write into, the base's internals;
- importing such a name (``from trl.x import _helper``).

``python tests/test_private_names.py [PACKAGE_DIR]`` prints what it finds (the list for a review of the package).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
import textwrap

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_cut")
FOREIGN = ("trl", "transformers", "accelerate", "peft")

# the only private names of those packages hf-cut may touch, each with its reason
ALLOWED = {
    # TRL's documented model-card class attributes: every TRL trainer (and every subclass) sets them for its card
    "_tag_names": "TRL's model-card tags, set by every trainer class",
    "_name": "TRL's model-card trainer name, set by every trainer class",
    "_paper": "TRL's model-card citation, set by every trainer class",
    # PreTrainedModel's documented hooks for a model class of one's own (the unrolled transformer)
    "_init_weights": "PreTrainedModel's documented weight-initialisation hook",
    "_no_split_modules": "PreTrainedModel's documented device-map hint",
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def sources(root: str):
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield path, open(path, encoding="utf-8").read()


def own_names(trees) -> set[str]:
    """Private names the package defines: its functions and classes, names assigned at module level or in a class
    body, and attributes its methods set on ``self`` / ``cls``. An attribute set on any other object defines nothing
    (``trainer._x = …`` writes into someone else's object)."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):  # fmt: skip
                names.add(node.attr)
        for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            for item in scope.body:
                targets = item.targets if isinstance(item, ast.Assign) else [item.target] if isinstance(
                    item, ast.AnnAssign) else []  # fmt: skip
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if is_private(name)}


def foreign_bases(cls) -> list[type]:
    return [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] in FOREIGN]


def subclasses(cls) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += subclasses(sub)
    return found


def foreign_privates(cls) -> set[str]:
    """Private names the foreign bases of ``cls``, and of the classes built on it (a mixin's trainers), define as
    class members or set on their instances."""
    names = set()
    for base in {base for sub in subclasses(cls) for base in foreign_bases(sub)}:
        names.update(name for name in vars(base) if is_private(name))
        try:
            names.update(re.findall(r"self\.(_[A-Za-z]\w*)", inspect.getsource(base)))
        except (OSError, TypeError):
            pass
    return names


def class_privates(node: ast.ClassDef) -> dict[str, int]:
    """Private names a class defines: its methods and class attributes, and what its methods set on ``self``."""
    found = {}
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_private(item.name):
            found[item.name] = item.lineno
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            found.update({t.id: item.lineno for t in targets if isinstance(t, ast.Name) and is_private(t.id)})
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and is_private(sub.attr):
            if isinstance(sub.value, ast.Name) and sub.value.id == "self":
                found.setdefault(sub.attr, sub.lineno)
    return found


def accessed(tree) -> list[tuple[str, int]]:
    """Private attributes read, written or called, by attribute syntax or by name in getattr / setattr / hasattr."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            found.append((node.attr, node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and is_private(node.args[1].value)):  # fmt: skip
            found.append((node.args[1].value, node.lineno))
    return found


def imported(tree) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FOREIGN:
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names if is_private(a.name)]
            found += [(node.module, node.lineno)] if any(is_private(p) for p in node.module.split(".")) else []
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names
                      if a.name.split(".")[0] in FOREIGN and any(is_private(p) for p in a.name.split("."))]  # fmt: skip
    return found


def _bases(node: ast.ClassDef, module) -> list:
    """The base classes of a class statement, evaluated in its module's namespace (names it imports)."""
    found = []
    for base in node.bases:
        try:
            found.append(eval(compile(ast.Expression(base), "<base>", "eval"), vars(module)))  # noqa: S307
        except Exception:  # noqa: BLE001  (a name local to the function: not a dependency's class)
            pass
    return found


def touched_private_names(root: str = ROOT) -> list[str]:
    """Every place the package at ``root`` touches a private name of a foreign package, as ``path:line: what``."""
    parsed = {path: ast.parse(text) for path, text in sources(root)}
    own = own_names(parsed.values())
    problems = []
    for path, tree in parsed.items():
        where = os.path.relpath(path, os.path.dirname(root))
        for name, line in accessed(tree):
            if name not in own and name not in ALLOWED:
                problems.append(f"{where}:{line}: reads or writes `{name}`, which hf-cut does not define")
        for name, line in imported(tree):
            problems.append(f"{where}:{line}: imports the private `{name}`")
        module = None
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if module is None:
                parts = os.path.relpath(path, os.path.dirname(root))[:-3].split(os.sep)
                module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            cls = getattr(module, node.name, None)
            if not isinstance(cls, type) or cls.__module__ != module.__name__:  # a class defined inside a function
                cls = type(node.name, tuple(b for b in _bases(node, module) if isinstance(b, type)) or (object,), {})
            if not any(foreign_bases(sub) for sub in subclasses(cls)) and not foreign_bases(cls):
                continue
            theirs = foreign_privates(cls) | {n for base in foreign_bases(cls) for n in foreign_privates(base)}
            for name, line in class_privates(node).items():
                if name in theirs and name not in ALLOWED:
                    problems.append(f"{where}:{line}: {node.name} overrides or sets `{name}` of a base class")
    return sorted(problems)


def test_the_package_touches_no_private_name_of_its_dependencies():
    problems = touched_private_names()
    assert not problems, "\n".join(problems)


def test_the_check_finds_each_kind_of_touch(tmp_path):
    """Broken on purpose: a package that reads a private attribute, overrides a private method, writes a base's
    private attribute and imports a private name is reported at each of those lines (and at nothing else)."""
    package = tmp_path / "pkg_with_privates"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text(textwrap.dedent("""\
        from transformers import Trainer
        from transformers.trainer_utils import _re_checkpoint


        class Mine(Trainer):
            _tag_names = ["fine"]

            def _save(self, output_dir=None, state_dict=None):
                self._train_batch_size = 8
                self._own = 1
                return self._own

            def step(self, batch):
                return self._prepare_inputs(batch), getattr(self.model.config, "_name_or_path", None)


        def tweak(trainer, model):
            trainer._globalstep_last_logged = 0
            return model.config._attn_implementation


        def build():
            from transformers import TrainerCallback

            class Local(TrainerCallback):
                def _private_hook(self):
                    self._own_too = 1
                    return self._own_too

            class Inner(Trainer):
                def _save(self, output_dir=None, state_dict=None):
                    return None

            return Local, Inner
        """))
    sys.path.insert(0, str(tmp_path))
    try:
        problems = touched_private_names(str(package))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pkg_with_privates.bad", None)
        sys.modules.pop("pkg_with_privates", None)
    lines = sorted((p.split(":")[1], p.split("`")[1]) for p in problems)
    assert lines == [("14", "_name_or_path"), ("14", "_prepare_inputs"), ("18", "_globalstep_last_logged"),
                     ("19", "_attn_implementation"), ("2", "transformers.trainer_utils._re_checkpoint"),
                     ("31", "_save"), ("8", "_save"), ("9", "_train_batch_size")], problems  # fmt: skip


if __name__ == "__main__":
    root = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    sys.path.insert(0, os.path.dirname(root))  # the classes checked are those of that folder
    found = touched_private_names(root)
    print("\n".join(found) or "no private name of trl, transformers, accelerate or peft is touched")
    print(f"{len(found)} place(s)")
