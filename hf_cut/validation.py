"""Checks of what a user types into a command line, run before any model is loaded or any step runs.

Each check raises ``ValueError`` with a message that starts with the argument's name and says what is allowed; the
command-line entry points (``hf-cut``, ``recipes/*.py``, ``eval/*.py``) turn it into one line on stderr and exit status
2 (:func:`refuse`): no usage block, no traceback. ``HF_CUT_TRACEBACK=1`` lets the exception through, for a bug report.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import NoReturn

import yaml

__all__ = [
    "check_alpha",
    "check_class_labels",
    "check_gammas",
    "check_labels",
    "check_model_paths",
    "check_sweep_args",
    "one_line_errors",
    "parse_checked",
    "parse_recipe_args",
    "refuse",
    "refused_as_usage",
]

# what a command line turns into a one-line refusal: a check's ValueError (json's decode error is one), a path that is
# missing or holds no model (transformers raises OSError), a YAML file that does not parse
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, yaml.YAMLError)

MODEL_FILES = ("config.json", "adapter_config.json")  # a saved model, a saved PEFT adapter
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_gammas(gammas: Sequence[float] | None, name: str = "--gammas") -> list[float]:
    """A non-empty list of finite noise levels γ >= 0."""
    if gammas is None or len(gammas) == 0:
        raise ValueError(f"{name}: give at least one noise level γ >= 0 (e.g. {name} 0 0.5 1).")
    values = []
    for gamma in gammas:
        try:
            value = float(gamma)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {gamma!r} is not a number; γ must be a finite number >= 0.") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: γ must be a finite number >= 0, got {gamma!r}.")
        values.append(value)
    return values


def check_alpha(alpha: float, name: str = "--alpha") -> None:
    """α of the constraints, in the open interval (0, 1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"{name}: must be in (0, 1), got {alpha}.")


def check_labels(labels: Sequence[str] | None, models: Sequence[str], name: str = "--labels") -> None:
    """One label per model, when labels are given."""
    if labels and len(labels) != len(models):
        raise ValueError(f"{name}: {len(labels)} labels for {len(models)} models (--model); give one label per model.")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return True
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def check_model_paths(paths: Iterable[str | None], name: str = "--model", short_names: Iterable[str] = ()) -> None:
    """Every entry is an existing directory, one of ``short_names``, or a Hub id (``name`` or ``namespace/name``);
    with ``HF_HUB_OFFLINE=1`` a Hub id must be in the local Hub cache."""
    allowed = {s.lower() for s in short_names}
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    for path in paths:
        if path is None or path.lower() in allowed:
            continue
        if os.path.isdir(path):
            if not any(os.path.isfile(os.path.join(path, name)) for name in MODEL_FILES):
                raise ValueError(f"{name}: {path!r} holds no model (no {' or '.join(MODEL_FILES)}); give a folder a "
                                 "trainer saved (save_model) or a Hub model id.")  # fmt: skip
            continue
        if os.path.exists(path):
            raise ValueError(f"{name}: {path!r} is a file; give a model directory (config.json and weights) or a "
                             "Hub model id.")  # fmt: skip
        if not _HUB_ID.fullmatch(path) or path.startswith((".", "~")):
            raise ValueError(f"{name}: {path!r} does not exist (not a directory, and not a Hub model id).")
        if offline and not _in_hub_cache(path):
            raise ValueError(
                f"{name}: {path!r} is not a local directory, and as a Hub model id it is not in the local cache "
                "(HF_HUB_OFFLINE=1: nothing is downloaded)."
            )


def check_class_labels(labels: Iterable, num_labels: int, name: str = "--dataset") -> None:
    """Every class label is an integer in ``0 … num_labels − 1`` (``num_labels`` of the model's classifier)."""
    bad = sorted({v for v in labels if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < num_labels},
                 key=repr)  # fmt: skip
    if bad:
        raise ValueError(
            f"{name}: labels {bad[:10]} do not fit the model's {num_labels} classes (allowed: integers 0 … "
            f"{num_labels - 1})."
        )


def check_sweep_args(args, short_names: Iterable[str] = ()) -> None:
    """The arguments every γ sweep shares (``--gammas``, ``--labels``, ``--model``, ``--alpha``)."""
    check_gammas(args.gammas)
    check_labels(args.labels, args.model)
    check_model_paths(args.model, short_names=short_names)
    if args.alpha is not None:  # None: read from the models' run summaries
        check_alpha(args.alpha)


def refuse(prog: str, message: str) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` as one line on stderr and exit with status 2 (a usage error)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(2)


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _raised_by_hf_cut(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is hf-cut's code (one of its checks), not a dependency's."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE + os.sep)


@contextlib.contextmanager
def refused_as_usage(prog: str, parsing: bool = False) -> Iterator[None]:
    """Inside, a refused input ends the command as :func:`refuse` does: while ``parsing``, any of
    :data:`USER_ERRORS`; around a whole command, a path that is missing or unreadable, or a
    ``ValueError`` / ``OSError`` that hf-cut's own code raised (its checks name the argument). An error raised inside
    a dependency later on (a shape error, a full disk, a lock timeout) keeps its traceback and exit status 1."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get("HF_CUT_TRACEBACK") == "1" or not (
            parsing or isinstance(err, _PATH_ERRORS) or _raised_by_hf_cut(err)
        ):
            raise
        refuse(prog, str(err) or type(err).__name__)


def one_line_errors(parser):
    """``parser`` (an ``argparse.ArgumentParser``, TRL's parser) with its usage errors as one line (:func:`refuse`);
    ``--help`` still prints the full usage."""
    parser.error = lambda message: refuse(parser.prog, message)
    return parser


def parse_checked(parser, argv: Sequence[str] | None, check=None) -> object:
    """``parser.parse_args(argv)``, then ``check(args)``: a bad flag or a ``ValueError`` from the check is refused in
    one line (exit status 2, :func:`refuse`), before the caller loads anything."""
    args = one_line_errors(parser).parse_args(argv)
    if check is not None:
        with refused_as_usage(parser.prog, parsing=True):
            check(args)
    return args


def parse_recipe_args(parser, argv: Sequence[str], default_config: str, check=None) -> tuple:
    """A recipe's ``TrlParser.parse_args_and_config``, then ``check(*dataclasses)``; a bad flag, a missing or malformed
    ``--config``, or a ``ValueError`` from either (a config field out of range, a missing model) is refused in one line
    (exit status 2, :func:`refuse`) before anything is loaded.

    Without ``--config`` the recipe's own YAML (``default_config``) is read and the flags given override it, as they
    override any ``--config``: ``recipe.py --output_dir X`` is the documented setup written to X, not the dataclasses'
    bare defaults."""
    argv = list(argv)
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", default_config, *argv]
    one_line_errors(parser)
    if argv[-1:] == ["--config"]:
        refuse(parser.prog, "argument --config: expected a path to a recipe YAML (recipes/*.yaml).")
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    if config is not None and not os.path.isfile(config):
        refuse(parser.prog, f"argument --config: no such file {config!r}; give a recipe YAML (recipes/*.yaml).")
    with refused_as_usage(parser.prog, parsing=True):
        parsed = parser.parse_args_and_config(argv)
        if check is not None:
            check(*parsed)
    return parsed
