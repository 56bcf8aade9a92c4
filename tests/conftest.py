"""Shared fixtures: tiny models built from configs and a word-level tokenizer trained on the spot (no Hub)."""

import importlib.util
import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
import transformers
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

WORDS = "the cat dog sat on mat a red blue green one two three four five big small ran".split()


def load_script(path, name: str | None = None):
    """Import a script (a recipe, an eval or bench CLI) by its path, as a module."""
    spec = importlib.util.spec_from_file_location(name or os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# decoder configs with the usual field names; Gemma 3 (scaled embeddings, (1 + w) norms) and Qwen3 (q/k norms) set
# their head size explicitly
DECODER_CONFIGS = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "mistral": ("MistralConfig", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 8}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 8, "sliding_window": 4}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
    "olmo2": ("Olmo2Config", {"pad_token_id": 0}),
}


def tiny_config(arch: str, vocab_size: int, num_layers: int = 3, **kwargs):
    common = dict(vocab_size=vocab_size, num_attention_heads=4, **kwargs)
    if arch == "gpt2":
        return transformers.GPT2Config(n_embd=32, n_layer=num_layers, n_head=4, vocab_size=vocab_size, **kwargs)
    if arch == "gpt_neox":
        return transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers, **common)
    name, extra = DECODER_CONFIGS[arch]
    extra = {k: v for k, v in extra.items() if k not in kwargs}
    return getattr(transformers, name)(hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
                                       num_key_value_heads=2, **extra, **common)  # fmt: skip


def tiny_causal_lm(arch: str = "llama", vocab_size: int = 64, num_layers: int = 3, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size, num_layers, **kwargs))
    return model.eval()


def make_rows(n: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))),
            "completion": " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))),
        }
        for _ in range(n)
    ]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


@pytest.fixture
def dataset() -> Dataset:
    return Dataset.from_list(make_rows())


def train_args(tmp_path, **overrides):
    from hf_cut import ConstrainedSFTConfig

    values = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        data_seed=0,
        dual_lr=0.5,
        resilience_coef=None,  # hard constraints: the hand-derived dual steps of the tests
        disable_tqdm=True,
        layer_loss_interval=1,  # the machinery at every step; tests of the interval set their own
        layer_loss_budget=None,  # every layer on every token (hand-derived numbers); tests of the budget set theirs
    )
    values.update(overrides)
    return ConstrainedSFTConfig(**values)


def tiny_trainer(tmp_path, tokenizer, dataset, arch="llama", model=None, **overrides):
    from hf_cut import ConstrainedSFTTrainer

    if model is None:
        model = tiny_causal_lm(
            arch, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
        )
    args = train_args(tmp_path, **overrides)
    return ConstrainedSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def need_installed(present: bool, what: str) -> None:
    """Skip a test whose optional package is missing; fail instead where CI installed it (HF_CUT_REQUIRE_REAL_ASSETS=1,
    set by .ci/run after scripts/install.sh)."""
    if not present:
        if os.environ.get("HF_CUT_REQUIRE_REAL_ASSETS") == "1":
            pytest.fail(f"{what} is not installed but HF_CUT_REQUIRE_REAL_ASSETS=1 (bash scripts/install.sh)")
        pytest.skip(f"{what} is not installed (bash scripts/install.sh)")


def require(module: str):
    """Import an optional test dependency: skipped where it is missing, a failure where CI installed it
    (``HF_CUT_REQUIRE_REAL_ASSETS=1``), never a silent skip of a broken install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        need_installed(False, f"{module} ({err})")


def score_eval_set(model, tokenizer, dataset, gamma: float, seed: int, alpha: float, batch_size: int = 64) -> dict:
    """The sweep engine's record of ``dataset`` at ``gamma`` (the causal-LM task, a session of its own)."""
    from hf_cut.evaluation.engine import evaluate
    from hf_cut.evaluation.tasks.causal_lm import CAUSAL_LM

    session = CAUSAL_LM.open(model, tokenizer, dataset, batch_size)
    try:
        return evaluate(CAUSAL_LM, session, gamma, seed, alpha)
    finally:
        session.close()
