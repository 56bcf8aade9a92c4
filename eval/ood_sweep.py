"""
Out-of-distribution γ sweep of saved models, for every task: per-layer loss, the task metric (token accuracy for
causal LMs, accuracy or RMSE for classifiers, RMSE for video denoisers) and constraint statistics against the noise
level γ of the input embeddings, with fixed seeds (the same noise draws for every model).
`--task classification` and `--task denoising` are what `eval/ood_sweep_cls.py` and `eval/ood_sweep_denoise.py` run.

Writes OUT/ood_sweep.json, OUT/ood_sweep.csv, OUT/metric_vs_gamma.png, OUT/loss_vs_layer.png and prints the
comparison table (see eval/report.py).

# Constrained against ERM on the built-in held-out split
```bash
python eval/ood_sweep.py \
    --model outputs/llama_sft_tiny outputs/llama_sft_tiny_erm \
    --labels constrained ERM \
    --gammas 0 0.5 1 1.5 2 \
    --noise_seeds 0 1 2 \
    --output_dir outputs/ood_sweep
```

# Classifiers and video denoisers: the same command, another task
```bash
python eval/ood_sweep.py --task classification --model outputs/cls_minilm outputs/cls_minilm_erm \
    --labels constrained ERM --gammas 0 0.5 1 2 --noise_seeds 0 1 2 --output_dir outputs/ood_sweep_cls
python eval/ood_sweep.py --task denoising --model outputs/unrolled_denoise outputs/unrolled_denoise_erm \
    --labels constrained ERM --output_dir outputs/unrolled_denoise_sweep
```

# Another evaluation set (Hub name or local path, its test split)
```bash
python eval/ood_sweep.py --model outputs/llama31-8b-alpaca-cut --dataset tatsu-lab/alpaca --limit 500 \
    --gammas 0 1 2 --output_dir outputs/ood_sweep_alpaca
```
"""

from hf_cut.cli.sweep import main, make_parser, parse_args  # noqa: F401  (the tests call them)

if __name__ == "__main__":
    from hf_cut.validation import refused_as_usage

    with refused_as_usage("ood_sweep.py"):
        main(parse_args(description=__doc__.strip().splitlines()[0]))
