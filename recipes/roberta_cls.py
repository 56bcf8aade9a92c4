"""
Fine-tuning of a sequence classifier (RoBERTa, BERT, MiniLM …) under the layerwise descent constraints of P-CUT

The recipe of ``hf-cut classify`` as a script: a thin file over
`hf_cut/recipes/classify.py` (what it trains and writes is described there); without `--config` it reads
`recipes/roberta_cls.yaml` next to this file, and any flag overrides the YAML.

# Built-in default: MiniLM (or a tiny BERT) on the offline sentiment task, 2-core CPU, a few minutes
```bash
python recipes/roberta_cls.py
```

# The plain-ERM baseline of the same run (layer losses still measured)
```bash
python recipes/roberta_cls.py --config recipes/roberta_cls.yaml --constrained false --output_dir outputs/cls_minilm_erm
```

# RoBERTa-base on IMDb, and on MNLI (matched and mismatched both reported)
```bash
accelerate launch recipes/roberta_cls.py --config recipes/roberta_imdb.yaml
accelerate launch recipes/roberta_cls.py --config recipes/roberta_mnli.yaml
```

# Any model, data set and option
```bash
python recipes/roberta_cls.py \
    --model_name_or_path distilroberta-base \
    --dataset_name reviews.csv --text_column review --label_column stars \
    --learning_rate 3.0e-5 --num_train_epochs 2 \
    --descent_alpha 0.05 --dual_lr 0.01 \
    --output_dir outputs/distilroberta-reviews-cut
```
"""

import os
import sys

from hf_cut.recipes.classify import check_args, main, make_parser, train  # noqa: F401  (the recipe's parts, by name)

# this folder's YAML (the same file as the package's built-in default): edit it here and this script reads it
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roberta_cls.yaml")

if __name__ == "__main__":
    train(sys.argv[1:], DEFAULT_CONFIG)
