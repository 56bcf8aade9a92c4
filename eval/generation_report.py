"""
Pool generation sweeps (eval/alpaca_eval.py outputs) over training seeds: win rate and exact match, mean ± std per
comparison and γ. Directories ROOT/<comparison>_s<seed>/alpaca_eval.json are pooled by <comparison>.

```bash
python eval/generation_report.py docs/smollm2/generation --output docs/smollm2/generation.json
```
"""

from hf_cut.cli.generation_report import main, make_parser, run  # noqa: E402, F401  (`hf-cut generation-report`)

if __name__ == "__main__":
    run()
