"""Same as `hf-cut generation-report`: its examples and options are in hf_cut/cli/generation_report.py (or `--help`)."""

from hf_cut.cli.generation_report import main, make_parser, run  # noqa: E402, F401  (`hf-cut generation-report`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("generation-report")
