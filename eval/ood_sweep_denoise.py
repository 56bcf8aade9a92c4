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
    --labels constrained unconstrained \
    --gammas 0 0.5 1 1.5 2 \
    --seeds 0 1 2 \
    --output_dir outputs/unrolled_denoise_sweep
```

# Another test set (any source of hf_cut.data_video; frame size and T must match the models)
```bash
python eval/ood_sweep_denoise.py --model outputs/unrolled_ucsd outputs/unrolled_ucsd_erm \
    --dataset_name ucsd --data_dir /data/UCSD_Anomaly_Dataset.v1p2/UCSDped2 --output_dir outputs/ucsd_sweep
```
"""

import argparse

SHORT_NAMES = ()  # model names resolved by hf-cut itself
import json
import os
from dataclasses import asdict, fields


def data_arguments(args: argparse.Namespace):
    """The test clips' settings: the first model's training data, overridden by the flags given."""
    from hf_cut.data_video import VideoDataArguments

    values = {}
    summary = os.path.join(args.model[0], "layer_losses.json")
    if args.dataset_name is None and os.path.isfile(summary):
        with open(summary, encoding="utf-8") as f:
            values.update(json.load(f).get("data", {}))
    given = {f.name: getattr(args, f.name, None) for f in fields(VideoDataArguments)}
    values.update({name: value for name, value in given.items() if value is not None})
    # The test clips do not depend on the number of training clips: read as few as possible
    values["num_train_examples"] = 1
    return VideoDataArguments.from_dict(values)


def main(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModel

    import hf_cut.models.unrolled  # noqa: F401  (registers the unrolled transformer with AutoModel)
    from hf_cut.evaluation.denoise_sweep import denoise_sweep, rmse_table, write_denoise_sweep

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    labels = args.labels or [os.path.basename(os.path.normpath(m)) for m in args.model]
    if len(labels) != len(args.model):
        raise ValueError(f"`--labels`: {len(labels)} labels for {len(args.model)} models.")
    data_args = data_arguments(args)
    test = data_args.load()["test"]
    if args.limit is not None:
        test = test.select(range(min(args.limit, len(test))))
    models = {label: AutoModel.from_pretrained(path) for label, path in zip(labels, args.model)}
    records = denoise_sweep(models, test, args.gammas, args.seeds, args.alpha, args.batch_size, args.noise_mean)
    config = {
        "models": [{"label": label, "path": path} for label, path in zip(labels, args.model)],
        "data": asdict(data_args),
        "alpha": args.alpha,
        "num_examples": len(test),
    }
    paths = write_denoise_sweep(records, args.output_dir, config=config)
    print(rmse_table(records))
    print("Written: " + ", ".join(paths.values()))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per model (default: directory names)")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0], help="noise levels γ")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="noise seeds")
    parser.add_argument("--alpha", type=float, default=0.1, help="α of the constraints whose satisfaction is measured")
    parser.add_argument("--noise_mean", type=float, default=0.0, help="μ, the mean of the test noise")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="sweep only the first N test clips")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output_dir", required=True)
    data = parser.add_argument_group("test clips (default: the first model's training data)")
    data.add_argument("--dataset_name", default=None, help="digits, shapes, ucsd, avenue, shanghaitech or folder")
    data.add_argument("--data_dir", default=None)
    data.add_argument("--train_subdir", default=None)
    data.add_argument("--test_subdir", default=None)
    data.add_argument("--frame_size", type=int, default=None)
    data.add_argument("--num_frames", type=int, default=None)
    data.add_argument("--noise_std", type=float, default=None, help="std of the data's own corruption (γ = 0)")
    data.add_argument("--dataset_seed", type=int, default=None)
    data.add_argument("--num_test_examples", type=int, default=None)
    data.add_argument("--clip_stride", type=int, default=None)
    data.add_argument("--frame_step", type=int, default=None)
    data.add_argument("--max_clips_per_video", type=int, default=None)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked before any model is loaded (a usage error names the bad argument)."""
    from hf_cut.validation import check_sweep_args, parse_checked

    return parse_checked(make_parser(), argv, lambda args: check_sweep_args(args, SHORT_NAMES))


if __name__ == "__main__":
    main(parse_args())
