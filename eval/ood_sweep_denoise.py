"""
Out-of-distribution γ sweep of saved video denoisers (unrolled transformers): RMSE and per-layer loss against the
level γ of extra Gaussian noise (std γ·σ_x) on the input frames, with fixed seeds (the same draws for every model).

Writes OUT/ood_sweep.json, OUT/ood_sweep.csv, OUT/metric_vs_gamma.png (RMSE against γ: the paper's Figure 2 kind),
OUT/loss_vs_layer.png (as every task's sweep) and prints the RMSE table. The test clips are those the first model was trained with (read from its
`layer_losses.json`, written by recipes/unrolled_denoise.py) unless `--dataset_name` is given.

# Constrained against unconstrained, both from recipes/unrolled_denoise.py
```bash
python eval/ood_sweep_denoise.py \
    --model outputs/unrolled_denoise outputs/unrolled_denoise_erm \
    --labels constrained ERM \
    --gammas 0 0.5 1 1.5 2 \
    --noise_seeds 0 1 2 \
    --output_dir outputs/unrolled_denoise_sweep
```

# Another test set (any source of hf_cut.data.video; frame size and T must match the models)
```bash
python eval/ood_sweep_denoise.py --model outputs/unrolled_ucsd outputs/unrolled_ucsd_erm \
    --dataset_name ucsd --data_dir /data/UCSD_Anomaly_Dataset.v1p2/UCSDped2 --output_dir outputs/ucsd_sweep
```

The same as `python eval/ood_sweep.py --task denoising …` (one parser for every task: hf_cut.cli.sweep).
"""

from hf_cut.cli.sweep import main, preset

make_parser, parse_args = preset("denoising", __doc__.strip().splitlines()[0])

if __name__ == "__main__":
    from hf_cut.validation import refused_as_usage

    with refused_as_usage("ood_sweep_denoise.py"):
        main(parse_args())
