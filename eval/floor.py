"""
The floor under a γ sweep's token accuracy: the accuracy of two predictors that never read their input (the most
frequent training token; the most frequent training token at each position of the completion), fitted on the
training completions and scored on the held-out tokens that `eval/ood_sweep.py` scores. A model under strong noise
that scores no more than this has lost everything its input told it.

```bash
# the SmolLM2 recipe's data: 480 training examples, the sweep's 64 held-out ones
python eval/floor.py --model smollm2 --num_train 480 --limit 64 --output docs/smollm2/floor.json
```
"""

from hf_cut.cli.floor import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut floor`)

if __name__ == "__main__":
    run()
