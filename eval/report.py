"""Same as `hf-cut report`: its examples and options are in hf_cut/cli/report.py (or `--help`)."""

from hf_cut.cli.report import main, make_parser, run  # noqa: E402, F401  (`hf-cut report`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("report")
