"""
Does a re-run reproduce a committed sweep? Each model of the new sweeps against the same measurements (label, model
path, γ, noise seed) of the reference sweeps: how many matched and the largest absolute difference of the metric.

```bash
python eval/compare_sweeps.py docs/smollm2/noise_training --against outputs/smollm2_noise/sweeps_reproduce/*
```
"""

from hf_cut.cli.compare import main, make_parser, run  # noqa: E402, F401  (`hf-cut compare`)

if __name__ == "__main__":
    run()
