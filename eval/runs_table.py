"""
One row per training run (the `layer_losses.json` a recipe writes): held-out loss and accuracy, how monotone the
layer losses are, constraint satisfaction, the final duals, the training time — a Markdown table and a JSON file.

```bash
python eval/runs_table.py outputs/smollm2/{erm,hard,cut}_s0 --labels ERM "hard (paper)" constrained     --output docs/smollm2/runs.json
# add two runs to a committed table, keeping its other rows
python eval/runs_table.py outputs/new_s0 outputs/new_s1 --merge docs/x/runs.json --output docs/x/runs.json
```
"""

from hf_cut.cli.runs_table import main, check_args, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut runs`)

if __name__ == "__main__":
    run()
