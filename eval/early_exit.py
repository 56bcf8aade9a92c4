"""
Early exit from saved causal LMs: held-out loss and token accuracy of every truncation ψ(h_k), and self-speculative
decoding (transformers' `assistant_early_exit`) against plain greedy decoding.

Writes OUT/early_exit.json (`layers_kept` per label: mean and std over the models that share it, e.g. training
seeds; `speculative` per label, on its first model: the best early exit k found on the first `--select_prompts`
held-out prompts, then measured on the next `--prompts`) and OUT/early_exit.png.

```bash
python eval/early_exit.py --model outputs/smollm2/erm_s0 outputs/smollm2/cut_s0 --labels ERM constrained     --limit 64 --speculative --early_exits 6 10 14 18 22 26 --output_dir docs/early_exit
```
`--save_truncated DIR` also writes each model cut at its best k (a plain checkpoint, `hf_cut.evaluation.save_truncated`).
"""

from hf_cut.cli.early_exit import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut early-exit`)

if __name__ == "__main__":
    run()
