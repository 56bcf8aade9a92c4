"""Same as `hf-cut alpaca-eval`: its examples and options are in hf_cut/cli/alpaca.py (or `--help`)."""

import os
import sys

# this file shares its name with the alpaca_eval package: keep its folder off the import path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_cut.cli.alpaca import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut alpaca-eval`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("alpaca-eval")
