"""Same as `hf-cut compare`: its examples and options are in hf_cut/cli/compare.py (or `--help`)."""

from hf_cut.cli.compare import main, make_parser, run  # noqa: E402, F401  (`hf-cut compare`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("compare")
