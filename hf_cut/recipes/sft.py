"""
Supervised fine-tuning of a Llama under the layerwise descent constraints of P-CUT (arXiv 2601.17257).

Trains with `hf_cut.ConstrainedSFTTrainer`, evaluates on the held-out split, and writes to `output_dir` the model,
`layer_losses.json` (held-out ℓ_0 … ℓ_L, dual variables, constraint satisfaction, token accuracy) and
`layer_losses.png`; the per-layer loss table is printed. Without `model_name_or_path` it builds a small random-init
Llama and a BPE tokenizer trained on the built-in offline instruction data. Without `--config` it reads
`llama_sft.yaml` (next to this file); any flag overrides the YAML, this one or the one given with `--config`.

Run it as ``hf-cut sft [flags]`` (launched through ``accelerate launch``; ``--accelerate_config NAME`` picks a
shipped configuration) or ``python -m hf_cut.recipes.sft [flags]`` (this process). The repository's
``recipes/llama_sft.py`` is a thin file over this module; its docstring lists the documented command lines.
"""

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, TrlParser

from ..config import ConstrainedSFTConfig, constraint_options
from ..model_card import method_label

# the built-in default, the same file as the repository's recipes/llama_sft.yaml
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_sft.yaml")


@dataclass
class LlamaSFTScriptArguments(ScriptArguments):
    """TRL's script arguments, with the built-in data as the default dataset, plus the built-in model's size.

    `dataset_name` goes to `hf_cut.data.load_instruction_dataset` ("builtin", a Hub name, a local folder or a JSON
    file); the `tiny_*` fields and `tokenizer_vocab_size` apply only when `model_name_or_path` is not set.
    """

    dataset_name: str | None = field(
        default="builtin",
        metadata={"help": "'builtin' (offline data), a Hub dataset name, a local folder or a .json/.jsonl file."},
    )
    dataset_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the built-in data and of the held-out split; kept apart from the training `seed` so that "
            "runs with different training seeds share one held-out set."
        },
    )
    num_train_examples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (all when unset)."}
    )
    num_test_examples: int | None = field(
        default=None, metadata={"help": "Keep only the first N held-out examples (all when unset)."}
    )
    tokenizer_vocab_size: int = field(
        default=1024, metadata={"help": "Built-in model: vocabulary size of the BPE tokenizer trained on the data."}
    )
    tiny_hidden_size: int = field(default=128, metadata={"help": "Built-in model: width."})
    tiny_num_layers: int = field(default=6, metadata={"help": "Built-in model: number of decoder layers L."})
    tiny_num_heads: int = field(default=4, metadata={"help": "Built-in model: attention heads."})
    sweep_gammas: list[float] = field(
        default_factory=list,
        metadata={"help": "Test perturbation levels γ of a γ sweep of the trained model on the held-out split, "
                  "written to output_dir/ood_sweep.json (none by default)."},
    )
    sweep_seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Noise seeds of the sweep."})


def main(script_args, training_args, model_args):
    """Train, evaluate and save one SFT run from the parsed dataclasses: the data (``script_args.dataset_name``),
    the model (``model_args.model_name_or_path``, else the built-in tiny Llama and its tokenizer), then
    ``ConstrainedSFTTrainer``, the held-out layer losses in ``output_dir/layer_losses.{json,png}``, an optional γ
    sweep, and the Hub push when asked."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from ..trainer import ConstrainedSFTTrainer
    from ..data import load_instruction_dataset, train_builtin_tokenizer
    from ..evaluation import layer_losses_from_metrics
    from ..run_files import finish_run, write_run_summary
    from ..models import tiny_llama_config
    from ..models.smollm2 import resolve_model_name

    model_args.model_name_or_path = resolve_model_name(model_args.model_name_or_path)

    # Data: train and held-out test splits in prompt/completion (or messages) form
    load_kwargs = {"name": script_args.dataset_config} if script_args.dataset_config else {}
    try:
        dataset = load_instruction_dataset(script_args.dataset_name, seed=script_args.dataset_seed, **load_kwargs)
    except ValueError as err:
        raise ValueError(f"--dataset_name {script_args.dataset_name!r}: {err}") from err
    for split, n in (("train", script_args.num_train_examples), ("test", script_args.num_test_examples)):
        if n is not None:
            dataset[split] = dataset[split].select(range(min(n, len(dataset[split]))))

    # Model and tokenizer
    if model_args.model_name_or_path is None:
        train = dataset["train"]
        texts = (p + c for p, c in zip(train["prompt"], train["completion"]))
        tokenizer = train_builtin_tokenizer(texts, vocab_size=script_args.tokenizer_vocab_size)
        config = tiny_llama_config(
            vocab_size=len(tokenizer),
            hidden_size=script_args.tiny_hidden_size,
            num_layers=script_args.tiny_num_layers,
            num_heads=script_args.tiny_num_heads,
            max_position_embeddings=max(256, training_args.max_length or 0),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        transformers.set_seed(training_args.seed)
        init_kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **init_kwargs)
        model_name = f"tiny-llama-{script_args.tiny_num_layers}x{script_args.tiny_hidden_size}"
    else:
        model_init_kwargs = dict(
            revision=model_args.model_revision,
            trust_remote_code=training_args.trust_remote_code,
            attn_implementation=model_args.attn_implementation,
            dtype=model_args.dtype,
        )
        if training_args.model_init_kwargs is not None:
            model_init_kwargs.update(training_args.model_init_kwargs)
        training_args.model_init_kwargs = model_init_kwargs
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path,
            revision=model_args.model_revision,
            trust_remote_code=training_args.trust_remote_code,
        )
        model = model_name = model_args.model_name_or_path

    # Train under the constraints (or plain ERM with --constrained false)
    trainer = ConstrainedSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["test"] if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("✅ Training completed.")

    # Held-out evaluation: ℓ_0 … ℓ_L, constraint satisfaction, token accuracy
    metrics = trainer.evaluate(dataset["test"])
    layer_losses = layer_losses_from_metrics(metrics, prefix="eval_")
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"💾 Model saved to {training_args.output_dir}.")

    if trainer.is_world_process_zero():
        summary = {
            "model": model_name,
            "dataset": script_args.dataset_name,
            **constraint_options(training_args),  # every constraint option, by name
            "num_layers": trainer.num_layers,
            "layer_losses": layer_losses,
            "dual_variables": trainer.dual_variables.tolist(),
            "constraint_satisfaction": metrics.get("eval_constraint_satisfaction"),
            "descent_ratio_mean": metrics.get("eval_descent_ratio_mean"),
            "eval_loss": metrics.get("eval_loss"),
            "eval_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
            "train_runtime": train_result.metrics.get("train_runtime"),
            "global_step": trainer.state.global_step,
            "eval_metrics": metrics,
            "log_history": trainer.state.log_history,  # the training logs (duals, layer losses) for eval/plot_duals.py
        }
        json_path, png_path = write_run_summary(trainer, summary, {method_label(training_args): layer_losses}, model_name)
        print(
            f"eval_loss {summary['eval_loss']:.4f}  token accuracy {summary['eval_mean_token_accuracy']:.4f}  "
            f"constraint satisfaction {summary['constraint_satisfaction']:.4f}  "
            f"mean descent ratio {summary['descent_ratio_mean']:.4f}"
        )
        print(f"📈 Layer losses written to {json_path} and {png_path}.")

    if script_args.sweep_gammas and trainer.is_world_process_zero():
        from ..evaluation import sweep
        from ..evaluation.report import write_sweep

        label, out = method_label(training_args), training_args.output_dir
        result = sweep("causal_lm", [out], script_args.sweep_gammas, dataset=dataset["test"],  # the saved model,
                       seeds=script_args.sweep_seeds, alpha=training_args.descent_alpha, labels=[label],  # as users
                       batch_size=training_args.per_device_eval_batch_size, progress=False)  # sweep it  # fmt: skip
        result.config["dataset"] = script_args.dataset_name
        write_sweep(result, out)

    finish_run(trainer, script_args.dataset_name)


def make_parser():
    """TRL's parser over the script arguments, ``ConstrainedSFTConfig`` and ``ModelConfig``."""
    return TrlParser((LlamaSFTScriptArguments, ConstrainedSFTConfig, ModelConfig))


def check_args(script_args, training_args, model_args) -> None:
    """Bad input, before any data or model is loaded."""
    from ..validation import check_model_paths

    check_model_paths([model_args.model_name_or_path], name="--model_name_or_path", short_names=("smollm2",))
    for name in ("num_train_examples", "num_test_examples"):
        value = getattr(script_args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name}: must be a positive number of examples, got {value}.")


def train(argv: Sequence[str] | None = None, default_config: str = DEFAULT_CONFIG) -> None:
    """Train in this process: the recipe's flags (``--config X.yaml``, else ``default_config``, then any field as a
    flag) parsed and checked, then :func:`main`. What each process of ``hf-cut sft`` runs, and
    ``recipes/llama_sft.py``."""
    from ..validation import parse_recipe_args

    main(*parse_recipe_args(make_parser(), sys.argv[1:] if argv is None else argv, default_config, check_args))


def run(argv: Sequence[str]) -> int:
    """``hf-cut sft [--accelerate_config NAME|FILE] [accelerate launch flags] [recipe flags]``: the flags checked
    here, then :func:`train` launched through ``accelerate launch``."""
    from .launch import launch

    return launch("hf_cut.recipes.sft", make_parser, argv, DEFAULT_CONFIG, check_args)


if __name__ == "__main__":
    train()
