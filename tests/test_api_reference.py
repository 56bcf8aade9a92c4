"""The API reference (mkdocs.yml, docs/api/): the site builds with every warning an error, so a documented name that
is renamed or removed, or a docstring griffe cannot parse, fails; and every public name has a reference entry."""

import ast
import os
import re
import subprocess
import sys

import hf_cut

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_DIR = os.path.join(ROOT, "docs", "api")


def api_targets() -> list[str]:
    """The objects the reference pages document: the ``::: hf_cut.…`` lines of docs/api/*.md."""
    targets = []
    for name in sorted(os.listdir(API_DIR)):
        if name.endswith(".md"):
            text = open(os.path.join(API_DIR, name), encoding="utf-8").read()
            targets += re.findall(r"^:::\s+(hf_cut(?:\.\w+)+)\s*$", text, flags=re.MULTILINE)
    return targets


def module_all(path: str) -> list[str]:
    """The ``__all__`` of a module, read from its source (nothing imported)."""
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def test_site_builds_strict(tmp_path):
    # mkdocs is in the dev extra: without it this fails (no skip), as a missing reference would
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "api" / "trainers" / "index.html").is_file()


def test_every_public_name_has_a_reference_entry():
    # a name counts as documented by an entry under its own package (`hf_cut.evaluation.entry.sweep` documents
    # `hf_cut.evaluation.sweep`), not by a namesake elsewhere
    targets = api_targets()
    assert targets, "no `::: hf_cut.…` entry found in docs/api/*.md"
    public = {
        "hf_cut": hf_cut.__all__,
        "hf_cut.evaluation": module_all("hf_cut/evaluation/__init__.py"),
        "hf_cut.recipes.launch": module_all("hf_cut/recipes/launch.py"),
    }

    def documented(package: str, name: str) -> bool:
        return any(t.startswith(f"{package}.") and t.endswith(f".{name}") for t in targets)

    missing = {package: sorted(n for n in names if not documented(package, n)) for package, names in public.items()}
    missing = {package: names for package, names in missing.items() if names}
    assert not missing, f"public names without a `::: hf_cut.…` entry in docs/api/*.md: {missing}"


def test_relative_links_of_the_docs_name_files_of_the_repository():
    # mkdocs.yml reports links to missing files at INFO level only (the prose links to files outside docs/): checked
    # here, inside docs/ and out
    broken = []
    for folder, _, files in os.walk(os.path.join(ROOT, "docs")):
        for name in files:
            if not name.endswith(".md"):
                continue
            path = os.path.join(folder, name)
            text = re.sub(r"^```.*?^```", "", open(path, encoding="utf-8").read(), flags=re.MULTILINE | re.DOTALL)
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                file = target.split("#", 1)[0]
                if not file or re.match(r"^[a-z]+:", file):  # an anchor on the page, or a URL
                    continue
                if not os.path.exists(os.path.normpath(os.path.join(folder, file))):
                    broken.append(f"{os.path.relpath(path, ROOT)}: {target}")
    assert not broken, f"links to files that do not exist: {broken}"


def test_every_reference_entry_has_a_docstring():
    """mkdocstrings renders an undocumented object as a bare signature, silently: each entry must have a docstring,
    read by griffe as the site reads it (an attribute's is the string right after its assignment)."""
    import griffe

    package = griffe.load("hf_cut", search_paths=[ROOT], resolve_aliases=True)
    bare = []
    for target in api_targets():
        obj = package[target[len("hf_cut.") :]]
        if obj.docstring is None or not obj.docstring.value.strip():
            bare.append(target)
    assert not bare, f"reference entries without a docstring: {bare}"
