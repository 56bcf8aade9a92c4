"""Same as `hf-cut merge`: its examples and options are in hf_cut/cli/merge.py (or `--help`)."""

from hf_cut.cli.merge import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut merge`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("merge")
