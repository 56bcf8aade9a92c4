"""Same as `hf-cut early-exit`: its examples and options are in hf_cut/cli/early_exit.py (`--help`)."""

from hf_cut.cli.early_exit import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut early-exit`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("early-exit")
