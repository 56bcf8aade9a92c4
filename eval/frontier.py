"""Same as `hf-cut frontier`: its examples and options are in hf_cut/cli/frontier.py (or `--help`)."""

from hf_cut.cli.frontier import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut frontier`)

if __name__ == "__main__":
    from hf_cut.cli import script

    script("frontier")
