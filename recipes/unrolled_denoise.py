"""
Video denoising with the paper's unrolled transformer under the layerwise descent constraints of P-CUT
(arXiv 2601.17257).

The recipe of ``hf-cut denoise`` as a script: a thin file over
`hf_cut/recipes/denoise.py` (what it trains and writes is described there); without `--config` it reads
`recipes/unrolled_denoise.yaml` next to this file, and any flag overrides the YAML.

# Built-in default: moving digits, 10 layers, 2-core CPU, one to two minutes
```bash
python recipes/unrolled_denoise.py
```

# The unconstrained (ERM) baseline, then the sweep of both (the paper's Figure 2)
```bash
python recipes/unrolled_denoise.py --config recipes/unrolled_denoise.yaml \
    --constrained false --output_dir outputs/unrolled_denoise_erm
python eval/ood_sweep_denoise.py --model outputs/unrolled_denoise outputs/unrolled_denoise_erm \
    --labels constrained ERM --seeds 0 1 2 --output_dir outputs/unrolled_denoise_sweep
```
The recipe can also sweep saved baselines itself: `--sweep_compare ERM=outputs/unrolled_denoise_erm`.

# Real videos (set data_dir in the YAML or on the command line)
```bash
python recipes/unrolled_denoise.py --config recipes/unrolled_ucsd.yaml --data_dir /data/UCSD_Anomaly_Dataset.v1p2/UCSDped2
python recipes/unrolled_denoise.py --config recipes/unrolled_avenue.yaml --data_dir "/data/Avenue Dataset"
python recipes/unrolled_denoise.py --config recipes/unrolled_shanghaitech.yaml --data_dir /data/shanghaitech
```
"""

import os
import sys

from hf_cut.recipes.denoise import main, make_parser, train  # noqa: F401  (the recipe's parts, by name)

# this folder's YAML (the same file as the package's built-in default): edit it here and this script reads it
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unrolled_denoise.yaml")

if __name__ == "__main__":
    train(sys.argv[1:], DEFAULT_CONFIG)
