"""An offline, deterministic pairwise judge for alpaca-eval, with its annotator config (this directory).

``configs.yaml`` and ``judge_prompt.txt`` beside this file form an alpaca-eval annotator config: pass this directory as
``annotators_config`` and :func:`local_judge_completions` (or :func:`make_local_judge`) as ``fn_completions``.
alpaca-eval renders each pair with the prompt template (after randomly switching the two outputs), calls the judge on
the prompts, parses its answers with ``eval_parser`` and switches the verdicts back.

The rule — it exercises the evaluation path offline, it does not measure quality:

* when the reference answer of the instruction is known (``answers``, e.g. hf-cut's built-in held-out prompts), the
  output with the higher unigram F1 against it wins (lower-cased ``\\w+`` tokens, counted with multiplicity);
* otherwise the output with more word tokens wins (a non-empty output beats an empty one);
* equal scores give a draw, 1.5.

:func:`make_exact_match_judge` is the second rule, a real quality metric wherever every instruction has one right
answer (hf-cut's built-in held-out prompts): the output that equals the reference answer (after
:func:`normalise_answer`) wins; both right or both wrong is a draw. :func:`make_f1_judge` is the third, which gives
partial credit where exact match ties: the output with the higher unigram F1 against the reference answer wins, a
draw only when both F1 are equal.

Verdicts follow alpaca-eval's encoding: 1 = ``output_1`` preferred, 2 = ``output_2`` preferred, 1.5 = draw.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "LOCAL_ANNOTATOR_DIR",
    "local_judge_completions",
    "local_judge_verdict",
    "exact_match",
    "make_exact_match_judge",
    "make_f1_judge",
    "make_local_judge",
    "normalise_answer",
    "parse_judge_prompt",
    "unigram_f1",
]

LOCAL_ANNOTATOR_DIR = Path(__file__).resolve().parent

_PROMPT_RE = re.compile(
    r"<\|instruction\|>\n(?P<instruction>.*)\n<\|output_1\|>\n(?P<output_1>.*)\n<\|output_2\|>\n(?P<output_2>.*)"
    r"\n<\|end\|>\s*$",
    re.DOTALL,
)
_WORD_RE = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def unigram_f1(prediction: str, answer: str) -> float:
    """Unigram F1 of ``prediction`` against ``answer`` (lower-cased word tokens, counted with multiplicity)."""
    pred, ref = _words(prediction), _words(answer)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def local_judge_verdict(output_1: str, output_2: str, answer: str | None = None) -> float:
    """The verdict on one pair: 1 (``output_1`` better), 2 (``output_2`` better) or 1.5 (draw). See the module doc."""
    if answer is not None:
        score_1, score_2 = unigram_f1(output_1, answer), unigram_f1(output_2, answer)
    else:
        score_1, score_2 = len(_words(output_1)), len(_words(output_2))
    if score_1 > score_2:
        return 1.0
    if score_2 > score_1:
        return 2.0
    return 1.5


def normalise_answer(text: str) -> str:
    """Lower-cased, whitespace collapsed, trailing full stop and surrounding whitespace removed."""
    return " ".join(text.lower().split()).rstrip(".").strip()


def exact_match(prediction: str, answer: str) -> bool:
    """Does ``prediction`` equal ``answer`` after :func:`normalise_answer`?"""
    return normalise_answer(prediction) == normalise_answer(answer)


def parse_judge_prompt(prompt: str) -> tuple[str, str, str]:
    """``(instruction, output_1, output_2)`` from a prompt rendered with ``judge_prompt.txt``."""
    match = _PROMPT_RE.search(prompt)
    if match is None:
        raise ValueError("not a prompt rendered from hf_cut's local_annotator/judge_prompt.txt")
    return match["instruction"], match["output_1"], match["output_2"]


def _judge(verdict: Callable[[str, str, str], float]) -> Callable[..., dict[str, list]]:
    """An alpaca-eval ``fn_completions`` that applies ``verdict(instruction, output_1, output_2)`` to every prompt."""

    def judge(prompts: Sequence[str], **kwargs) -> dict[str, list]:
        start = time.perf_counter()
        completions = []
        for prompt in prompts:
            value = verdict(*parse_judge_prompt(prompt))
            completions.append("1.5" if value == 1.5 else str(int(value)))
        elapsed = (time.perf_counter() - start) / max(len(prompts), 1)
        return dict(
            completions=completions,
            price_per_example=[0.0] * len(prompts),
            time_per_example=[elapsed] * len(prompts),
        )

    return judge


def _reference_judge(answers: Mapping[str, str], score: Callable[[str, str], float], name: str):
    """An alpaca-eval ``fn_completions``: the output with the higher ``score(output, answer)`` against the
    instruction's reference answer wins; equal scores are a draw. Every judged instruction must be in ``answers``."""
    answers = {k.strip(): v for k, v in answers.items()}
    if not answers:
        raise ValueError(f"`answers` is empty: the {name} judge needs the reference answer of every instruction.")

    def verdict(instruction: str, output_1: str, output_2: str) -> float:
        answer = answers.get(instruction.strip())
        if answer is None:
            raise KeyError(f"no reference answer for the instruction {instruction[:80]!r}")
        score_1, score_2 = score(output_1, answer), score(output_2, answer)
        return 1.5 if score_1 == score_2 else 1.0 if score_1 > score_2 else 2.0

    return _judge(verdict)


def make_exact_match_judge(answers: Mapping[str, str]) -> Callable[..., dict[str, list]]:
    """An alpaca-eval ``fn_completions``: the output equal to the instruction's reference answer wins; both or neither
    is a draw. Every judged instruction must be in ``answers`` (instruction → answer)."""
    return _reference_judge(answers, lambda output, answer: float(exact_match(output, answer)), "exact-match")


def make_f1_judge(answers: Mapping[str, str]) -> Callable[..., dict[str, list]]:
    """An alpaca-eval ``fn_completions`` that gives partial credit: the output with the higher unigram F1 against the
    instruction's reference answer wins, a draw only when the two F1 are equal (both right, both sharing no word with
    the answer, or equally close). Every judged instruction must be in ``answers`` (instruction → answer)."""
    return _reference_judge(answers, unigram_f1, "token-F1")


def make_local_judge(answers: Mapping[str, str] | None = None) -> Callable[..., dict[str, list]]:
    """An alpaca-eval ``fn_completions`` applying the rule, with ``answers`` (instruction → reference answer) known."""
    answers = {k.strip(): v for k, v in (answers or {}).items()}
    return _judge(lambda instruction, output_1, output_2: local_judge_verdict(
        output_1, output_2, answers.get(instruction.strip())))  # fmt: skip


def local_judge_completions(prompts: Sequence[str], **kwargs) -> dict[str, list]:
    """alpaca-eval decoder applying the rule without reference answers (the longer output wins)."""
    return make_local_judge()(prompts, **kwargs)
