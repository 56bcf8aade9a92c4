"""
Merge γ sweeps (one per model, or from earlier studies) into one: records concatenated, labels optionally renamed,
aggregates recomputed; writes OUT/ood_sweep.json, ood_sweep.csv and the plots, as eval/ood_sweep.py does.

```bash
python eval/merge_sweeps.py outputs/sweeps/erm_g1_s0 outputs/sweeps/cut_g1_s0 --output_dir docs/smollm2/noise_training
# an earlier sweep whose labels lacked the training γ
python eval/merge_sweeps.py docs/smollm2 --relabel "ERM=ERM γ=0" "constrained=constrained γ=0" --output_dir out
# two settings out of a merged file
python eval/merge_sweeps.py docs/smollm2/noise_training --keep "ERM γ=1" "constrained γ=1" --output_dir out
```
"""

from hf_cut.cli.merge import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut merge`)

if __name__ == "__main__":
    run()
