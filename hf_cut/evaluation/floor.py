"""The floor under a γ sweep's token accuracy: what a predictor that never reads its input scores.

Under strong noise a causal LM sees nothing of its prompt, and what it still gets right it could get right blind —
the end-of-sequence token of a short answer, the commonest first word. Two such predictors, fitted on the training
completions and scored on exactly the tokens the γ sweep scores (:func:`completion_tokens`), tell where the
sweep's curves stop meaning anything:

- ``majority``: the most frequent training token, at every position;
- ``positional``: the most frequent training token at each position of the completion (the majority token beyond
  the longest training completion).

Ties go to the token seen first. ``eval/floor.py`` is the command line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["completion_tokens", "input_free_accuracy"]


def input_free_accuracy(train: Sequence[Sequence[int]], test: Sequence[Sequence[int]]) -> dict[str, float]:
    """Token accuracy on ``test`` of the ``majority`` and ``positional`` predictors fitted on ``train`` (token ids of
    the completions, one list per example), with ``num_tokens`` scored."""
    overall, by_position = Counter(), []
    for tokens in train:
        for position, token in enumerate(tokens):
            if position == len(by_position):
                by_position.append(Counter())
            by_position[position][token] += 1
            overall[token] += 1
    if not overall:
        raise ValueError("train: no completion token to fit the predictors on.")
    majority = overall.most_common(1)[0][0]
    modes = [counts.most_common(1)[0][0] for counts in by_position]
    scored = [(position, token) for tokens in test for position, token in enumerate(tokens)]
    if not scored:
        raise ValueError("test: no completion token to score.")
    positional = sum(token == (modes[p] if p < len(modes) else majority) for p, token in scored)
    return {
        "majority": sum(token == majority for _, token in scored) / len(scored),
        "positional": positional / len(scored),
        "num_tokens": len(scored),
    }


def completion_tokens(model, tokenizer, dataset, batch_size: int = 16) -> list[list[int]]:
    """The completion token ids of each row of a prompt/completion (or messages) ``dataset`` that a γ sweep scores
    — prepared as ``SFTTrainer`` prepares them, as :func:`hf_cut.evaluation.sweep.ood_sweep` does (the model is not
    run, and is not needed)."""
    from .tasks.lm_data import prepare_rows

    return [[label for label in row["labels"] if label != -100] for row in prepare_rows(dataset, tokenizer)]
