"""
Out-of-distribution γ sweep of saved classifiers: per-layer loss, accuracy (RMSE for regressors) and constraint
statistics against the noise level γ of the input embeddings, with fixed seeds (the same noise draws for every model).

Writes OUT/ood_sweep.json, OUT/ood_sweep.csv, OUT/metric_vs_gamma.png, OUT/loss_vs_layer.png and prints the
comparison table.

# Constrained against ERM on the built-in held-out split (outputs of recipes/roberta_cls.py)
```bash
python eval/ood_sweep_cls.py \
    --model outputs/cls_minilm outputs/cls_minilm_erm \
    --labels constrained ERM \
    --gammas 0 0.5 1 2 \
    --noise_seeds 0 1 2 \
    --output_dir outputs/ood_sweep_cls
```

# MNLI, matched and mismatched
```bash
python eval/ood_sweep_cls.py --model outputs/roberta-base-mnli-cut outputs/roberta-base-mnli-erm \
    --labels constrained ERM --dataset nyu-mll/glue --dataset_config mnli --split validation_matched \
    --gammas 0 0.5 1 2 --output_dir outputs/ood_sweep_mnli_matched
python eval/ood_sweep_cls.py --model outputs/roberta-base-mnli-cut outputs/roberta-base-mnli-erm \
    --labels constrained ERM --dataset nyu-mll/glue --dataset_config mnli --split validation_mismatched \
    --gammas 0 0.5 1 2 --output_dir outputs/ood_sweep_mnli_mismatched
```

The same as `python eval/ood_sweep.py --task classification …` (one parser for every task: hf_cut.cli.sweep).
"""

from hf_cut.cli.sweep import main, preset

make_parser, parse_args = preset("classification", __doc__.strip().splitlines()[0])

if __name__ == "__main__":
    from hf_cut.validation import refused_as_usage

    with refused_as_usage("ood_sweep_cls.py"):
        main(parse_args())
