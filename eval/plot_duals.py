"""
Dual variables during training: Σ_l λ_l and max_l λ_l against the optimizer step, with the training token accuracy,
one line per run — from a run's `layer_losses.json` (its `log_history`) or from the log a recipe printed
(one dict per logging step, as the Trainer prints it with `disable_tqdm`).

```bash
python eval/plot_duals.py logs/hard_s0.log logs/cut_s0.log --labels "hard (paper)" "β = 1/L"     --logging_steps 5 --output docs/smollm2/duals.png
```
"""

from hf_cut.cli.plot_duals import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut plot-duals`)

if __name__ == "__main__":
    run()
