"""
Side-by-side comparison of a γ sweep: per γ, each model's metric (mean ± std over seeds), its difference to the
baseline, the share of satisfied constraints and the mean descent ratio.

```bash
python eval/report.py outputs/ood_sweep --baseline ERM
# mean ± std over training seeds (each saved model averaged over its noise seeds first), one column per model
python eval/report.py docs/smollm2 --by_training_seed --metric token_accuracy
# one row per setting (label) and one column per γ: studies of many settings
python eval/report.py docs/smollm2/noise_training --by_training_seed --rows models
# one draw of the evaluation noise only (does a comparison survive another draw?)
python eval/report.py docs/smollm2/noise_training/noise_seeds --by_training_seed --rows models --noise_seeds 1
# is A ahead of B by more than the spread, γ by γ?
python eval/report.py docs/smollm2/noise_training --differences "ERM γ=1 vs constrained γ=1"
```
"""

from hf_cut.cli.report import main, make_parser, run  # noqa: E402, F401  (`hf-cut report`)

if __name__ == "__main__":
    run()
