"""Same as `hf-cut runs`: its examples and options are in hf_cut/cli/runs_table.py (or `--help`)."""

from hf_cut.cli.runs_table import main, check_args, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut runs`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("runs")
