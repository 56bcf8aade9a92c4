"""The evidence pages cannot drift from their results: every measured number a page quotes is found in the committed
results it names.

A page's results are its own study's ``results/`` folder and every results folder it links to (a link into a
``results/`` folder, or to another study's page). A quoted number — a decimal with at least three significant digits
in the prose or a table, outside code — is found when it appears as written in one of those results' tables (``.md``,
``.csv``), or when a number of their JSON files rounds to it at the quoted precision, as it is or scaled by 100 (a
percentage) or 1000 (the pages' "RMSE × 1000"). The few numbers a page quotes from elsewhere (the paper's) are listed
below with their source; nothing else is exempt. A page that quotes a number its results do not hold fails, naming
the number.
"""

from __future__ import annotations

import glob
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob("studies/*/README.md", root_dir=ROOT)) + [
    "README.md", "docs/recipes.md", "docs/evaluation.md", "docs/method.md", "docs/scaling.md"]  # fmt: skip

NUMBER = re.compile(r"(?<![\w.\-−])[−-]?\d+\.\d+(?![\w.])")
LINK = re.compile(r"\]\(([^)\s#]+)")
SCALES = (1, 100, 1000)

# page -> {quoted number: where it comes from}: numbers of the paper (arXiv 2601.17257), quoted for comparison
ELSEWHERE = {
    "studies/smollm2/README.md": {"70.8": "the paper's share of constraints met", "69.83": "the paper's AlpacaEval"},
    "studies/smollm2_noise/README.md": {"69.83": "the paper's AlpacaEval win rate at γ = 1.5"},
    "studies/unrolled/README.md": {"70.8": "the paper's share of constraints met"},
    "docs/evaluation.md": {"69.83": "the paper's AlpacaEval win rate at γ = 1.5"},
}


def significant_digits(token: str) -> int:
    return len(token.lstrip("−-").replace(".", "").lstrip("0"))


def prose(path: str) -> str:
    """The page without fenced code, inline code, link targets and the paper's arXiv number."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"arXiv[: ]\s*\d{4}\.\d{5}|\d{4}\.\d{5}\)", "", text)


# the benchmark's results, which the prose pages of docs/ quote without a link
NAMED = {"docs/method.md": ["bench/results"], "docs/scaling.md": ["bench/results"]}


def results_folders(path: str) -> list[str]:
    """The page's own study ``results/``, every results folder (or study page) it links to, and :data:`NAMED`."""
    base = os.path.dirname(path)
    folders = {os.path.join(base, "results")} if path.startswith("studies/") else set()
    folders.update(NAMED.get(path, []))
    for target in LINK.findall(open(os.path.join(ROOT, path), encoding="utf-8").read()):
        if re.match(r"^[a-z]+:", target):
            continue
        parts = os.path.normpath(os.path.join(base, target)).split(os.sep)
        if "results" in parts:
            folders.add(os.sep.join(parts[: parts.index("results") + 1]))
        elif parts[-1] == "README.md" and os.path.isdir(os.path.join(ROOT, *parts[:-1], "results")):
            folders.add(os.sep.join([*parts[:-1], "results"]))
    return sorted(f for f in folders if os.path.isdir(os.path.join(ROOT, f)))


def numbers_of(value, out: list[float]) -> list[float]:
    if isinstance(value, dict):
        for item in value.values():
            numbers_of(item, out)
    elif isinstance(value, list):
        for item in value:
            numbers_of(item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(float(value))
    return out


def results_of(folders: list[str]) -> tuple[str, set[float]]:
    """The text of the folders' tables and the numbers of their JSON files."""
    texts, values = [], []
    for folder in folders:
        for file in sorted(glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True)):
            if file.endswith((".md", ".csv")):
                texts.append(open(file, encoding="utf-8").read())
            elif file.endswith(".json"):
                with open(file, encoding="utf-8") as f:
                    numbers_of(json.load(f), values)
    return "\n".join(texts).replace("−", "-"), set(values)


def holds(token: str, text: str, values: set[float]) -> bool:
    plain = token.replace("−", "-")
    if re.search(rf"(?<![\d.]){re.escape(plain.lstrip('-'))}(?![\d])", text):
        return True
    decimals = len(plain.split(".")[1])
    target = round(abs(float(plain)), decimals)
    return any(round(abs(v) * scale, decimals) == target for v in values for scale in SCALES)


def quoted(path: str) -> list[str]:
    return [t for t in NUMBER.findall(prose(path)) if significant_digits(t) >= 3]


@pytest.mark.parametrize("path", PAGES)
def test_every_quoted_number_is_in_the_pages_results(path):
    folders = results_folders(path)
    text, values = results_of(folders)
    elsewhere = ELSEWHERE.get(path, {})
    missing = sorted({t for t in quoted(path) if t not in elsewhere and not holds(t, text, values)})
    assert not missing, f"{path} quotes numbers that its results ({folders}) do not hold: {missing}"


def test_the_checker_finds_a_drifted_number(tmp_path):
    """A table value changed by one unit in its last digit is caught (the check is not vacuous), and a number
    scaled ×1000 or given as a percentage is found."""
    text, values = results_of(["studies/unrolled/results"])
    assert holds("0.2603", text, values) and holds("260.3", text, values) or holds("0.2603", text, values)
    assert not holds("0.2604", "", {0.26033})
    assert holds("260.33", "", {0.26033}) and holds("26.03", "", {0.26033}) and holds("−0.0250", "", {-0.025})
    assert not holds("0.0251", "", {-0.025})
    assert all(significant_digits(t) >= 3 for t in quoted("studies/unrolled/README.md"))
    assert len(quoted("studies/unrolled/README.md")) > 100
