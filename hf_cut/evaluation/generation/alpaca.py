"""AlpacaEval under input-embedding noise: generate at each γ, judge pairwise against a reference, plot win rate vs γ.

The paper compares the constrained model against the unconstrained one on AlpacaEval's 805 instructions (50% at γ = 0,
69.83% at γ = 1.5). Judging goes through alpaca-eval itself (``alpaca_eval.evaluate`` with ``fn_metric="get_winrate"``):
its default annotator needs an API key; ``annotators_config="local"`` plugs in hf-cut's deterministic offline judge
(:mod:`hf_cut.evaluation.generation.local_annotator`), which exercises the path but does not measure quality.

Offline notes: the 805 instructions and AlpacaEval's reference outputs are JSON files of the Hub dataset
``tatsu-lab/alpaca_eval``, read directly with ``hf_hub_download`` (its loading script no longer runs with
datasets >= 4, tatsu-lab/alpaca_eval#454); without the Hub the instructions fall back to hf-cut's built-in held-out
prompts. The length-controlled win rate downloads from the Hub and is not computed here.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...data import format_prompt
from .alpaca_data import (
    ALPACA_EVAL_2_REFERENCE_FILE,
    ALPACA_EVAL_REPO,
    BUILTIN_DATASET,
    load_alpaca_eval_instructions,
    load_alpaca_eval_reference_outputs,
    read_outputs,
    write_model_outputs,
)
from .decode import generate_completions
from .local_annotator import (
    LOCAL_ANNOTATOR_DIR,
    exact_match,
    make_exact_match_judge,
    make_f1_judge,
    make_local_judge,
    unigram_f1,
)
from ...files import write_json
from ..plots import plot_win_rates

# the offline judges by name: each needs the reference answer of every instruction
REFERENCE_JUDGES = {"local-exact": make_exact_match_judge, "local-f1": make_f1_judge}

__all__ = [
    "ALPACA_EVAL_REPO",
    "BUILTIN_DATASET",
    "alpaca_eval_sweep",
    "judge_pairwise",
    "load_alpaca_eval_instructions",
    "load_alpaca_eval_reference_outputs",
    "plot_win_rates",
    "read_outputs",
    "write_model_outputs",
]

logger = logging.getLogger(__name__)

RESULT_KEYS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate")


# --- Judging ---


def _import_alpaca_eval():
    """Import alpaca_eval without its side effects on warnings and on the root logger's level."""
    root_level = logging.getLogger().level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation
            import alpaca_eval
            import alpaca_eval.main
    except ImportError as err:
        raise ImportError(
            "AlpacaEval judging needs alpaca-eval (`pip install 'alpaca-eval>=0.6.6' 'setuptools<81'`; it imports "
            f"pkg_resources, which setuptools >= 81 no longer ships): {err}"
        ) from err
    finally:
        logging.getLogger().setLevel(root_level)  # alpaca_eval.annotators sets it to INFO on import
    return alpaca_eval


def _is_local(annotators_config: str | os.PathLike | None) -> bool:
    if annotators_config is None:
        return False
    if str(annotators_config) in ("local", *REFERENCE_JUDGES):
        return True
    path = Path(annotators_config)
    path = path.parent if path.name == "configs.yaml" else path
    return path.exists() and path.resolve() == LOCAL_ANNOTATOR_DIR


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy → Python, NaN → None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _align(model_outputs: Sequence[Mapping], reference_outputs: Sequence[Mapping]) -> list[dict]:
    """The reference rows for the model's instructions, in the model's order (each instruction must be there)."""
    by_instruction = {row["instruction"]: dict(row) for row in reference_outputs}
    missing = [row["instruction"] for row in model_outputs if row["instruction"] not in by_instruction]
    if missing:
        raise ValueError(f"{len(missing)} instructions have no reference output, e.g. {missing[0][:80]!r}")
    return [by_instruction[row["instruction"]] for row in model_outputs]


def judge_pairwise(
    model_outputs: list[dict],
    reference_outputs: list[dict],
    annotators_config: str | None = None,
    output_path: str | None = None,
    fn_completions: Callable | None = None,
    answers: Mapping[str, str] | None = None,
) -> dict:
    """Judge ``model_outputs`` against ``reference_outputs`` with alpaca-eval; the win rate of the model, in %.

    Args:
        model_outputs: AlpacaEval rows (``instruction``, ``output``, ``generator``; ``dataset`` optional).
        reference_outputs: the same for the reference; must cover every model instruction (extra rows are dropped).
        annotators_config: ``None`` = alpaca-eval's default annotator (an API judge, needs its key); an alpaca-eval
            config name or a path to a directory with ``configs.yaml``; ``"local"`` = hf-cut's offline judge (unigram
            F1, exercises the path); ``"local-exact"`` = the offline exact-match judge, ``"local-f1"`` = the offline
            token-F1 judge that gives partial credit (both need ``answers``).
        output_path: directory where alpaca-eval writes ``leaderboard.csv`` and ``annotations.json`` (none if None).
        fn_completions: a Python judge (alpaca-eval decoder) that overrides the config's; with the local config and
            none given, :func:`~hf_cut.evaluation.generation.local_annotator.make_local_judge` with ``answers`` is used.
        answers: instruction → reference answer, for the local judges only.

    Returns:
        ``win_rate`` and ``standard_error`` (in %, draws count half), ``n_wins``, ``n_wins_base``, ``n_draws``,
        ``n_total``, ``discrete_win_rate``, and ``annotator``.
    """
    alpaca_eval = _import_alpaca_eval()
    model_outputs = [dict(row) for row in model_outputs]
    reference_outputs = _align(model_outputs, reference_outputs)
    if annotators_config is None:
        config = alpaca_eval.constants.DEFAULT_ANNOTATOR_CONFIG
    elif _is_local(annotators_config):
        config = str(LOCAL_ANNOTATOR_DIR)
        if fn_completions is None and str(annotators_config) in REFERENCE_JUDGES:
            fn_completions = REFERENCE_JUDGES[str(annotators_config)](answers or {})
        fn_completions = fn_completions or make_local_judge(answers)
    else:
        config = str(annotators_config)
    annotator_kwargs = {"fn_completions": fn_completions} if fn_completions is not None else {}
    name = model_outputs[0].get("generator", "model") if model_outputs else "model"
    root_level = logging.getLogger().level
    try:
        leaderboard, _ = alpaca_eval.evaluate(
            model_outputs=model_outputs,
            reference_outputs=reference_outputs,
            annotators_config=config,
            name=name,
            output_path=output_path,
            precomputed_leaderboard=None,
            is_return_instead_of_print=True,
            fn_metric="get_winrate",  # the length-controlled metric downloads from the Hub
            sort_by="win_rate",
            is_cache_leaderboard=False,
            caching_path=None,  # "auto" would write annotations next to the annotator's configs.yaml
            **annotator_kwargs,
        )
    finally:
        logging.getLogger().setLevel(root_level)
    row = leaderboard.loc[name].to_dict()
    result = {key: _clean(row[key]) for key in RESULT_KEYS if key in row}
    if str(annotators_config) in REFERENCE_JUDGES:
        result["annotator"] = str(annotators_config)
    else:
        result["annotator"] = "local" if _is_local(config) else config
    return result


# --- Sweep ---


def _load_causal_lm(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ...models.smollm2 import resolve_model_name

    path = resolve_model_name(path)  # "smollm2": the packaged SmolLM2-135M-Instruct

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), tokenizer


def _is_outputs_file(reference: str) -> bool:
    if not reference.endswith((".json", ".jsonl")):
        return False
    if not Path(reference).is_file():
        raise FileNotFoundError(f"reference outputs file {reference!r} not found")
    return True


def alpaca_eval_sweep(
    model_path: str,
    reference: str | None,
    gammas: list[float],
    output_dir: str,
    seed: int = 0,
    limit: int | None = None,
    annotators_config: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    instructions: str | None = None,
    noise_mean: float = 0.0,
    prompt_format: str = "chat",
) -> dict:
    """AlpacaEval win rate of ``model_path`` against a reference at each noise level γ.

    For each γ the model's outputs (seed ``seed``) go to ``output_dir/outputs_gamma{γ}.json`` and are judged against
    the reference; ``output_dir/alpaca_eval.json`` (win rate ± standard error per γ) and ``output_dir/win_rate.png``
    are written; alpaca-eval's own annotations per γ go to ``output_dir/judge_gamma{γ}/``.

    Args:
        model_path: saved model directory (or Hub name) with its tokenizer.
        reference: a ``.json``/``.jsonl`` of outputs in AlpacaEval's format (e.g. the unconstrained model's), the
            same at every γ; or a model path, generated at the same γ and seed (the paper: constrained vs
            unconstrained, both perturbed); or ``None``: AlpacaEval 2's reference outputs from the Hub.
        gammas: noise levels γ.
        output_dir: where everything is written.
        seed: noise seed, the same for model and reference.
        limit: evaluate the first N instructions only.
        annotators_config: see :func:`judge_pairwise` (``"local"`` = offline judge).
        batch_size, max_new_tokens: generation settings (see :func:`generate_completions`).
        instructions: instruction source for :func:`load_alpaca_eval_instructions` (default: AlpacaEval's 805, else
            the built-in held-out prompts).
        noise_mean: μ of the noise.
        prompt_format: ``"chat"``: each instruction as one user turn of the tokenizer's chat template (else
            :func:`~hf_cut.data.format_prompt`); ``"training"``: the row's own ``prompt`` (the exact text a model was
            fine-tuned on; built-in rows carry it), else ``format_prompt(instruction)``.

    Where the rows carry reference answers, each γ's result also holds the exact-match rate of the model's and the
    reference's outputs (``exact_match``, ``reference_exact_match``, in %).
    """
    if prompt_format not in ("chat", "training"):
        raise ValueError(f"`prompt_format` must be 'chat' or 'training', got {prompt_format!r}.")
    if not gammas:
        raise ValueError("`gammas` is empty")
    _import_alpaca_eval()  # fail before generating if the judge cannot run
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_alpaca_eval_instructions(instructions, limit)
    answers = {row["instruction"]: row["answer"] for row in rows if "answer" in row}
    generator = Path(model_path).name or str(model_path)
    model, tokenizer = _load_causal_lm(model_path)

    fixed_reference = ref_model = ref_tokenizer = None
    if reference is None:
        try:
            fixed_reference = load_alpaca_eval_reference_outputs()
        except Exception as err:
            raise RuntimeError(
                "AlpacaEval's reference outputs come from the Hub, which is unreachable; pass `reference` (a JSON of "
                f"outputs or a model path) instead: {type(err).__name__}: {err}"
            ) from err
        reference_name = f"{ALPACA_EVAL_REPO}/{ALPACA_EVAL_2_REFERENCE_FILE}"
    elif _is_outputs_file(reference):
        fixed_reference = read_outputs(reference)
        reference_name = str(reference)
    else:
        ref_model, ref_tokenizer = _load_causal_lm(reference)
        reference_name = str(reference)
    reference_generator = Path(reference).name if ref_model is not None else None
    if reference_generator == generator:
        reference_generator = f"{generator} (reference)"

    gen_kwargs = dict(seed=seed, noise_mean=noise_mean, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if prompt_format == "training":
        gen_kwargs["prompts"] = [row.get("prompt") or format_prompt(row["instruction"]) for row in rows]

    def mean_score(outputs: Sequence[Mapping], score) -> float | None:
        """Mean of ``score(output, answer)`` over the prompts, in %; None without every reference answer."""
        if len(answers) < len(rows):
            return None
        by_instruction = {row["instruction"]: row["output"] for row in outputs}
        return 100.0 * sum(float(score(by_instruction[row["instruction"]], row["answer"])) for row in rows) / len(rows)

    results = []
    for gamma in gammas:
        tag = f"gamma{gamma:g}"
        texts = generate_completions(model, tokenizer, [r["instruction"] for r in rows], gamma=gamma, **gen_kwargs)
        model_outputs = write_model_outputs(rows, texts, generator, out / f"outputs_{tag}.json")
        if ref_model is not None:
            ref_texts = generate_completions(
                ref_model, ref_tokenizer, [r["instruction"] for r in rows], gamma=gamma, **gen_kwargs
            )
            reference_outputs = write_model_outputs(
                rows, ref_texts, reference_generator, out / f"reference_outputs_{tag}.json"
            )
        else:
            reference_outputs = fixed_reference
        judged = judge_pairwise(
            model_outputs, reference_outputs, annotators_config, output_path=str(out / f"judge_{tag}"), answers=answers
        )
        scores = {"exact_match": mean_score(model_outputs, exact_match),
                  "reference_exact_match": mean_score(reference_outputs, exact_match),
                  "token_f1": mean_score(model_outputs, unigram_f1),
                  "reference_token_f1": mean_score(reference_outputs, unigram_f1)}  # fmt: skip
        results.append({"gamma": float(gamma), **judged, **{k: v for k, v in scores.items() if v is not None}})
        logger.info("γ = %g: win rate %.2f%% ± %s", gamma, judged["win_rate"], judged.get("standard_error"))

    summary = {
        "model": str(model_path),
        "reference": reference_name,
        "annotator": results[0]["annotator"],
        "metric": "win_rate (alpaca_eval get_winrate, %, draws count half)",
        "seed": seed,
        "noise_mean": noise_mean,
        "num_instructions": len(rows),
        "datasets": sorted({row["dataset"] for row in rows}),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "prompt_format": prompt_format,
        "results": results,
    }
    summary["plot"] = plot_win_rates(
        results, out / "win_rate.png", title=f"{generator} vs {Path(reference_name).name}: AlpacaEval win rate"
    )
    write_json(out / "alpaca_eval.json", summary, indent=2, ensure_ascii=False)
    return summary
