"""The README's Layout section against the tree: every path it names exists, and every module and folder of the
package (and every top-level folder of the repository) is named."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORED = {"outputs", "trainer_output", "logs", "build", "dist", "mutants", "site"}  # made by runs, git-ignored


def layout_entries() -> list[str]:
    """Paths of the Layout block, nested under ``hf_cut/`` where indented below it."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    entries, parent = [], ""
    for line in block.splitlines():
        match = re.match(r"^( {4,})(\S+)", line)
        if not match or not re.search(r"[./]", match.group(2)):
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent == 4:
            parent = name if name.endswith("/") else ""
            entries.append(name)
        else:
            entries.append(parent + name)
    return entries


def test_layout_names_exist():
    entries = layout_entries()
    assert "hf_cut/duals.py" in entries and "tests/" in entries
    missing = [e for e in entries if not os.path.exists(os.path.join(ROOT, e.rstrip("/")))]
    assert not missing, f"the README's Layout names paths that do not exist: {missing}"


def test_layout_names_every_module_and_folder():
    entries = set(layout_entries())
    package = os.path.join(ROOT, "hf_cut")
    modules = {
        f"hf_cut/{name}" + ("/" if os.path.isdir(os.path.join(package, name)) else "")
        for name in os.listdir(package)
        if (name.endswith(".py") and name != "__init__.py") or (
            os.path.isdir(os.path.join(package, name)) and not name.startswith("__"))
    }  # fmt: skip
    folders = {
        f"{name}/"
        for name in os.listdir(ROOT)
        if os.path.isdir(os.path.join(ROOT, name)) and not name.startswith((".", "_")) and name not in IGNORED
        and not name.endswith(".egg-info")
    }  # fmt: skip
    assert not modules - entries, f"modules missing from the README's Layout: {sorted(modules - entries)}"
    assert not folders - entries, f"folders missing from the README's Layout: {sorted(folders - entries)}"
