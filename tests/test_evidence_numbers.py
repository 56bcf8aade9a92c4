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

import functools
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
    # docs/performance.md's quality table (bench/quality.py, whose runs' summaries are not committed): that page is
    # not one this test covers
    "docs/method.md": {"72.8": "docs/performance.md, quality of the default budget",
                       "76.3": "docs/performance.md, quality of every layer at every step"},
}
# page -> {number: why it is not checked}: measured, but aggregated by hand from a results file (no report writes
# the aggregate); each is a gap to close with a report, listed here so that it stays visible
NOT_COVERED = {
    "studies/smollm2/README.md": {
        n: "the early-exit table: means ± std over seeds of results/early_exit/early_exit.json's per-model values"
        for n in ("13.2", "25.0", "30.6", "4.5", "54.1", "6.3", "60.5")
    },
}


def significant_digits(token: str) -> int:
    return len(token.lstrip("−-").replace(".", "").lstrip("0"))


def prose(text: str) -> str:
    """The page's text without fenced code, inline code, link targets and the paper's arXiv number."""
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


# per-step logs and raw metric dumps: thousands of numbers a quoted value could match by chance
UNQUOTED_KEYS = {"log_history", "eval_metrics"}


class Results:
    """What a page's results hold: the text of their tables (``.md``, ``.csv``) and those tables' rows, the numbers of
    their JSON files (per-step logs left out), and every (mean, std) pair of their JSON (``X_mean``/``X_std``,
    ``mean``/``std``, item by item for lists)."""

    def __init__(self, folders: list[str]):
        texts, self.values, self.pairs = [], set(), set()
        for folder in folders:
            for file in sorted(glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True)):
                if file.endswith((".md", ".csv")):
                    texts.append(open(file, encoding="utf-8").read())
                elif file.endswith(".json"):
                    with open(file, encoding="utf-8") as f:
                        self._walk(json.load(f))
        self.text = "\n".join(texts).replace("−", "-")
        # a table's ``mean ± std`` is a pair too, at any scale (0.375 ± 0.011 is quoted as 37.5 ± 1.1%)
        self.pairs.update((float(m), float(s)) for m, s in re.findall(r"(-?\d+\.\d+) ± (\d+\.\d+)", self.text))
        # (table header, row label) -> the rows of the results' markdown tables under that header with that label
        self.rows: dict[tuple, list[list[str]]] = {}
        for header, rows in tables(self.text):
            for row in rows:
                self.rows.setdefault((tuple(header), row[0]), []).append(row)

    def _walk(self, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in UNQUOTED_KEYS:
                    continue
                std = {"mean": "std"}.get(key) or (key[: -len("mean")] + "std" if key.endswith("_mean") else None)
                if std in value:
                    means, stds = value[key], value[std]
                    if isinstance(means, list) and isinstance(stds, list):
                        self.pairs.update((m, s) for m, s in zip(means, stds) if _number(m) and _number(s))
                    elif _number(means) and _number(stds):
                        self.pairs.add((float(means), float(stds)))
                self._walk(item)
        elif isinstance(value, list):
            for item in value:
                self._walk(item)
        elif _number(value):
            self.values.add(float(value))

    def in_text(self, *tokens: str) -> bool:
        """The tokens as written in a table, sign included: one number, or ``mean ± std``; or a difference with its
        spread, ``±d (s)``, whose sign a page may give in words ("behind by 1.2 ± 0.6")."""
        plain = [t.replace("−", "-") for t in tokens]
        sign = "-" if plain[0].startswith("-") else ""
        if len(plain) == 1:
            return sign + plain[0].lstrip("+-") in self._text_numbers
        mean, std = plain[0].lstrip("+-"), plain[1]
        return (sign + mean, std) in self._text_pairs or (mean, std) in self._text_differences

    @functools.cached_property
    def _text_numbers(self) -> frozenset[str]:
        return frozenset(sign.replace("+", "") + number for sign, number in
                         re.findall(r"(?<![\w.])([+-]?)(\d+(?:\.\d+)?)(?![\d])", self.text))  # fmt: skip

    @functools.cached_property
    def _text_pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset((sign.replace("+", "") + mean, std) for sign, mean, std in
                         re.findall(r"(?<![\w.])([+-]?)(\d+\.\d+)\s*±\s*(\d+\.\d+)", self.text))  # fmt: skip

    @functools.cached_property
    def _text_differences(self) -> frozenset[tuple[str, str]]:
        return frozenset(re.findall(r"(?<![\w.])[+-]?(\d+\.\d+) \((\d+\.\d+)\)", self.text))

    def holds(self, token: str) -> bool:
        """One number: in a table, or a JSON number rounded at the quoted precision (×1, ×100, ×1000), sign kept."""
        if self.in_text(token):
            return True
        value, decimals = _parse(token)
        return value in self._rounded(decimals)

    def holds_pair(self, mean: str, std: str) -> bool:
        """``mean ± std``: both in one table cell, or one (mean, std) pair of the JSON at one scale."""
        if self.in_text(mean, std):
            return True
        (m, dm), (s, ds) = _parse(mean), _parse(std)
        return (m, s) in self._rounded_pairs(dm, ds)

    @functools.cache  # noqa: B019  (one Results per page, kept for the page's checks)
    def _rounded(self, decimals: int) -> frozenset[float]:
        return frozenset(round(v * k, decimals) for v in self.values for k in SCALES)

    @functools.cache  # noqa: B019
    def _rounded_pairs(self, dm: int, ds: int) -> frozenset[tuple[float, float]]:
        return frozenset((round(a * k, dm), round(b * k, ds)) for a, b in self.pairs for k in SCALES)


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The markdown tables of ``text``: (header cells, rows of cells), cells stripped, − read as -, ** dropped."""
    found, lines = [], text.replace("−", "-").replace("**", "").splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
                j += 1
            found.append(([c.strip() for c in lines[i].strip().strip("|").split("|")], rows))
    return found


def table_mismatches(path: str, results: Results, page_text: str | None = None) -> tuple[list[str], int]:
    """The rows of the page's tables copied from a results table (the same header, the same row label), compared
    cell by cell as text: the rows that differ from every results row they could be, and how many rows were checked
    this way (the other rows' numbers go to the number-level check)."""
    text = page_text if page_text is not None else open(os.path.join(ROOT, path), encoding="utf-8").read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    wrong, checked = [], 0
    for header, rows in tables(text):
        for row in rows:
            candidates = results.rows.get((tuple(header), row[0]))
            if candidates:
                checked += 1
                if row not in candidates:
                    wrong.append(f"{row[0]!r} under {' | '.join(header)}: {row[1:]}, the results: {candidates[0][1:]}")
    return wrong, checked


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse(token: str) -> tuple[float, int]:
    plain = token.replace("−", "-")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    return round(float(plain), decimals), decimals


PAIR = re.compile(r"(?<![\w.\-−])([−-]?\d+\.\d+) ± (\d+\.\d+)")


def quoted(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``mean ± std`` pairs of a page's text, and its other numbers of 3+ significant digits."""
    text = prose(text)
    pairs = PAIR.findall(text)
    singles = [t for t in NUMBER.findall(PAIR.sub(" ", text)) if significant_digits(t) >= 3]
    return pairs, singles


def exempt(path: str) -> dict[str, str]:
    return {**ELSEWHERE.get(path, {}), **NOT_COVERED.get(path, {})}


def problems(path: str, results: Results, text: str | None = None) -> list[str]:
    """What the page (or ``text``, a version of it) quotes that its results do not hold: rows of its tables copied
    from a results table that differ from it, and numbers found nowhere in the results."""
    text = text if text is not None else open(os.path.join(ROOT, path), encoding="utf-8").read()
    wrong, _ = table_mismatches(path, results, text)
    copied = [row for header, rows in tables(text) for row in rows if (tuple(header), row[0]) in results.rows]
    for row in copied:  # checked cell by cell above
        text = text.replace("| " + " | ".join(row) + " |", "")
    elsewhere = exempt(path)
    pairs, singles = quoted(text)
    wrong += [f"{m} ± {s}" for m, s in pairs if m not in elsewhere and not results.holds_pair(m, s)]
    return sorted(set(wrong + [t for t in singles if t not in elsewhere and not results.holds(t)]))


@pytest.mark.parametrize("path", PAGES)
def test_every_quoted_number_is_in_the_pages_results(path):
    folders = results_folders(path)
    wrong = problems(path, Results(folders))
    assert not wrong, f"{path} quotes what its results ({folders}) do not hold: {wrong}"


def _nudged(token: str) -> str:
    """``token`` one unit larger in its last digit (−0.0250 → −0.0249, 0.2603 → 0.2604)."""
    value, decimals = _parse(token)
    step = 10.0**-decimals
    nudged = value + step
    text = f"{abs(nudged):.{decimals}f}"
    return ("−" if token.startswith("−") and nudged < 0 else "-" if nudged < 0 else "") + text


def test_the_checker_catches_numbers_off_by_one_unit():
    """Each quoted number of every page in turn made one unit larger in its last digit, the rest of the page kept.
    In a table row copied from a results table (the same header and row label) every such change is caught. A
    number elsewhere — the prose, a table the page composed itself — is looked up among all the numbers of the results
    and can match another one by chance: measured, 406 of 759 were caught when this test was written (the floor
    asserted is 1 in 2)."""
    copied, other = [0, 0], [0, 0]  # [numbers, caught]
    for path in PAGES:
        results = Results(results_folders(path))
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        code = [m.span() for m in re.finditer(r"^```.*?^```|`[^`\n]*`|\]\([^)]*\)", text, re.MULTILINE | re.DOTALL)]
        anchored = {"| " + " | ".join(row) + " |" for header, rows in tables(text) for row in rows
                    if (tuple(header), row[0]) in results.rows}  # fmt: skip
        for m in NUMBER.finditer(text):
            if significant_digits(m.group()) < 3 or m.group() in exempt(path) or any(a <= m.start() < b for a, b in code):
                continue
            line = text[text.rfind("\n", 0, m.start()) + 1 : text.find("\n", m.end())]
            tally = copied if line.replace("−", "-").replace("**", "") in anchored else other
            tally[0] += 1
            tally[1] += bool(problems(path, results, text[: m.start()] + _nudged(m.group()) + text[m.end() :]))
    assert copied[0] >= 400 and copied[1] == copied[0], f"copied rows: {copied[1]} of {copied[0]} caught"
    assert other[0] >= 100 and other[1] >= 0.5 * other[0], f"elsewhere: {other[1]} of {other[0]} caught"


def test_matching_rules_by_hand():
    results = Results([])
    results.text = "| a | 0.2603 ± 0.0008 | -0.0250 (0.0012)* | +0.0013 |"
    results.values, results.pairs = {0.26033, 0.7161}, {(0.7161, 0.0062)}
    assert results.holds_pair("0.2603", "0.0008") and not results.holds_pair("0.2603", "0.0009")
    assert results.holds("−0.0250") and not results.holds("0.0250")  # the sign counts
    assert results.holds("0.0013") and not results.holds("−0.0013")
    assert results.holds("260.33") and results.holds("26.03") and not results.holds("0.2604")
    assert results.holds_pair("71.6", "0.6") and results.holds_pair("0.716", "0.006")
    assert not results.holds_pair("71.6", "0.7") and not results.holds_pair("71.7", "0.6")
    assert _nudged("−0.0250") == "−0.0249" and _nudged("0.2603") == "0.2604" and _nudged("99.73") == "99.74"
