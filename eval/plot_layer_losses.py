"""
Plot and tabulate the held-out loss per layer of one or more runs of `recipes/llama_sft.py`.

Each OUT_DIR must hold the `layer_losses.json` the recipe writes; the curves are labelled by `--labels` (one per
directory; the directory names by default), drawn into one PNG, and printed as a table. With `--sweep`, the curves
are instead the mean layer losses of each model label of a γ sweep (`eval/ood_sweep.py`) at `--gamma`.

# From a γ sweep: every label at γ = 0, log scale (a real LLM's ℓ_0 is tens of nats)
```bash
python eval/plot_layer_losses.py --sweep docs/smollm2/ood_sweep.json --gamma 0 --models pretrained ERM constrained     --log --output docs/smollm2/layer_losses.png
```

# Constrained against plain ERM
```bash
python eval/plot_layer_losses.py outputs/llama_sft_tiny outputs/llama_sft_tiny_erm     --labels constrained ERM     --output docs/layer_losses.png
```
"""

from hf_cut.cli.plot import main, make_parser, run  # noqa: E402, F401  (`hf-cut plot`)

if __name__ == "__main__":
    run()
