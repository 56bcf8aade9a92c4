"""
The accuracy frontier of methods against each other: accuracy at γ = 0 (x) against accuracy under noise (y), every
method's settings as points with ± std over training seeds, at a mild and a strong noise level, and whether any
point of the candidate method lies beyond the baselines' frontiers by more than the spread.

Reads γ sweeps (`ood_sweep.json` files or their directories, from `eval/ood_sweep.py`, any task) whose labels start
with a method name (`ERM γ=0.5`, `deep supervision w=0.3 γ=1`, `constrained upper half γ=1`); writes
`frontier.json` (points, verdicts), `frontier.md` (the table) and `frontier.png`, and prints the table and the verdict. Run it on your own model's sweeps:

# The SmolLM2 noise-training study (docs/results/noise_training.md)
```bash
python eval/frontier.py docs/smollm2/noise_training --output_dir docs/smollm2 --floor docs/smollm2/floor.json
```

# Your own sweeps, noise levels chosen by hand, classification accuracy
```bash
python eval/frontier.py outputs/sweep_a outputs/sweep_b --mild 0.5 --strong 1.5 --metric accuracy     --output_dir outputs/frontier
```
"""

from hf_cut.cli.frontier import main, make_parser, parse_args, run  # noqa: E402, F401  (`hf-cut frontier`)

if __name__ == "__main__":
    run()
