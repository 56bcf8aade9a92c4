"""Same as `hf-cut floor`: its examples and options are in hf_cut/cli/floor.py (or `--help`)."""

from hf_cut.cli.floor import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut floor`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("floor")
