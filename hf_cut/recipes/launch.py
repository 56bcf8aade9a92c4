"""``hf-cut sft|classify|denoise``: a recipe's flags checked here, then the recipe launched through ``accelerate
launch`` (``python -m hf_cut.recipes.<name>`` on each process), as ``trl sft`` launches TRL's scripts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from importlib import resources

from ..validation import one_line_errors, parse_recipe_args, refuse

__all__ = ["ACCELERATE_CONFIGS", "accelerate_config_path", "launch", "split_launch_args"]

ACCELERATE_CONFIGS = ("ddp", "zero2", "zero3", "zero3_offload", "fsdp2")
"""The accelerate configurations shipped in ``hf_cut/accelerate_configs`` (the repository's ``accelerate_configs/``),
by the name ``--accelerate_config`` takes: data parallel, DeepSpeed ZeRO-2, ZeRO-3 (and with CPU offload), FSDP2; each
written for 8 GPUs in bf16 (``--num_processes``, ``--mixed_precision`` override)."""


def accelerate_config_path(name: str) -> str:
    """The file of the accelerate configuration ``name``: a path to a YAML file, or the name of one shipped with
    hf-cut (:data:`ACCELERATE_CONFIGS`). Raises ``ValueError`` naming the choices otherwise."""
    if os.path.isfile(name):
        return name
    if name in ACCELERATE_CONFIGS:
        return str(resources.files("hf_cut").joinpath("accelerate_configs", f"{name}.yaml"))
    raise ValueError(f"--accelerate_config: {name!r} is neither a file nor one of the configurations shipped with "
                     f"hf-cut ({', '.join(ACCELERATE_CONFIGS)}).")  # fmt: skip


def _without(argv: list[str], drop: list[str]) -> list[str]:
    """``argv`` without ``drop``, an ordered subsequence of it (the strings the recipe's parser did not take)."""
    rest, i = [], 0
    for arg in argv:
        if i < len(drop) and arg == drop[i]:
            i += 1
        else:
            rest.append(arg)
    return rest


def _split_equals(argv: Sequence[str]) -> list[str]:
    """``--flag=value`` as ``--flag value`` (TRL's ``--config`` and the split below read separate words)."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            out += arg.split("=", 1)
        else:
            out.append(arg)
    return out


def split_launch_args(parser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into ``accelerate launch``'s arguments and the recipe's: the strings the recipe's parser does not
    take go to accelerate, ``--accelerate_config NAME`` as ``--config_file FILE``. A YAML given with ``--config`` is
    read only for the recipe (its unknown keys are refused later, by name). A flag the recipe's parser cannot read (a
    missing value, an ambiguous abbreviation) is refused in one line."""
    argv = _split_equals(argv)
    launch_args: list[str] = []
    if "--accelerate_config" in argv:
        i = argv.index("--accelerate_config")
        if i + 1 >= len(argv):
            raise ValueError("--accelerate_config: expected a configuration name "
                             f"({', '.join(ACCELERATE_CONFIGS)}) or a YAML file.")  # fmt: skip
        if "--config_file" in argv:
            raise ValueError("--accelerate_config and --config_file both name accelerate's configuration; give one.")
        launch_args += ["--config_file", accelerate_config_path(argv[i + 1])]
        del argv[i : i + 2]
    parser.epilog = ("Launch: --accelerate_config NAME|FILE (NAME one of " + ", ".join(ACCELERATE_CONFIGS)
                     + ", shipped with hf-cut) and the flags of `accelerate launch` (--num_processes N, "
                     "--mixed_precision no, …) go to accelerate; the rest to the recipe.")  # fmt: skip
    flags = list(argv)
    if "--config" in flags:  # the recipe's YAML: its keys are the recipe's own (checked by parse_recipe_args)
        i = flags.index("--config")
        del flags[i : i + 2]
    _, unknown = one_line_errors(parser).parse_known_args(flags)  # argparse alone: no dataclass is built here
    return launch_args + unknown, _without(argv, unknown)


def launch(module: str, make_parser: Callable, argv: Sequence[str], default_config: str,
           check: Callable | None = None) -> int:  # fmt: skip
    """Check the recipe's flags (one-line refusals, before anything is loaded), then run ``python -m MODULE`` with them
    under ``accelerate launch``; returns the exit status of the launch."""
    prog = f"hf-cut {module.rsplit('.', 1)[-1]}"
    launch_args, recipe_args = split_launch_args(make_parser(), argv)
    parse_recipe_args(make_parser(), recipe_args, default_config, check)  # refused here, not on every rank
    from accelerate.commands.launch import launch_command, launch_command_parser

    launcher = launch_command_parser()
    unknown = " (neither a flag of the recipe nor of accelerate launch)"
    launcher.error = lambda message: refuse(prog, message + (unknown if message.startswith("unrecognized") else ""))
    args = launcher.parse_args([*launch_args, "--module", module, *recipe_args])
    if args.training_script != module:  # a stray word taken by accelerate as the script to run instead of the recipe
        refuse(prog, f"unrecognized argument {args.training_script!r}: not a flag or a flag's value (a YAML goes after "
               "--config)")
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:  # the recipe's own error is on its stderr already
        return err.returncode or 1
    return 0
