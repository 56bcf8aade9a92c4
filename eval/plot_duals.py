"""Same as `hf-cut plot-duals`: its examples and options are in hf_cut/cli/plot_duals.py (or `--help`)."""

from hf_cut.cli.plot_duals import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut plot-duals`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("plot-duals")
