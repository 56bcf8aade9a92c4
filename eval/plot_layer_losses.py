"""Same as `hf-cut plot`: its examples and options are in hf_cut/cli/plot.py (or `--help`)."""

from hf_cut.cli.plot import main, make_parser, run  # noqa: E402, F401  (`hf-cut plot`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("plot")
