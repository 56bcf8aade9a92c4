"""Instruction data: a prompt format, a small offline dataset, a tokenizer and loaders.

Everything here works offline. The built-in dataset is generated procedurally from
small hand-written tables, so a tiny model can be trained and evaluated end to end
without downloading anything; real datasets (Alpaca-style or already in
prompt/completion or conversational form) go through :func:`load_instruction_dataset`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .sources import read_splits

INSTRUCTION_HEADER = "### Instruction:\n"
INPUT_HEADER = "### Input:\n"
RESPONSE_HEADER = "### Response:\n"
SECTION_SEP = "\n\n"
PROMPT_TEMPLATE = INSTRUCTION_HEADER + "{instruction}" + SECTION_SEP + RESPONSE_HEADER
PROMPT_WITH_INPUT_TEMPLATE = (
    INSTRUCTION_HEADER + "{instruction}" + SECTION_SEP + INPUT_HEADER + "{input}" + SECTION_SEP + RESPONSE_HEADER
)

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
PAD_TOKEN = "<|pad|>"


def format_prompt(instruction: str, input: str = "") -> str:
    """Render an instruction (and optional input) in the instruction/response layout.

    The returned text ends with the response header, so the answer follows directly.
    """
    if input and input.strip():
        return PROMPT_WITH_INPUT_TEMPLATE.format(instruction=instruction, input=input)
    return PROMPT_TEMPLATE.format(instruction=instruction)


# --- Built-in procedural dataset ---

WORDS: tuple[str, ...] = tuple(
    "cat dog sun moon tree bird fish book door hat cup ball car star rain snow road lake "
    "hill rock milk bread apple egg box bed pen key ring bell boat ship king song game "
    "leaf rose wind fire gold salt shoe coat map frog bear duck wolf lion cake corn".split()
)

CAPITALS: dict[str, str] = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Canada": "Ottawa", "Brazil": "Brasilia",
    "Peru": "Lima", "Chile": "Santiago", "Australia": "Canberra", "Greece": "Athens",
    "Turkey": "Ankara", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna", "Ireland": "Dublin",
    "Hungary": "Budapest", "Cuba": "Havana", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "Iran": "Tehran", "Ghana": "Accra",
}

_ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("open", "closed"),
    ("happy", "sad"), ("light", "dark"), ("early", "late"), ("old", "young"), ("rich", "poor"),
    ("hard", "soft"), ("long", "short"), ("wet", "dry"), ("full", "empty"), ("high", "low"),
    ("strong", "weak"), ("loud", "quiet"), ("clean", "dirty"), ("thick", "thin"), ("push", "pull"),
    ("win", "lose"), ("left", "right"), ("first", "last"), ("day", "night"), ("true", "false"),
    ("buy", "sell"), ("near", "far"), ("black", "white"), ("alive", "dead"), ("give", "take"),
)
ANTONYMS: dict[str, str] = {a: b for a, b in _ANTONYM_PAIRS} | {b: a for a, b in _ANTONYM_PAIRS}
NEXT_LETTER: dict[str, str] = {chr(c): chr(c + 1) for c in range(ord("a"), ord("z"))}

# (key, instruction, input, completion); the key identifies the underlying item so
# that train and test never share one.
Example = tuple[Hashable, str, str, str]
# (key, template arguments, input, completion) as drawn by an algorithmic sampler.
Sample = tuple[Hashable, tuple[Any, ...], str, str]
TaskFn = Callable[[random.Random, bool], Example]


def _algorithmic_task(templates: tuple[str, ...], sample: Callable[[random.Random], Sample]) -> TaskFn:
    """Wrap an item sampler; the phrasing is picked at random from ``templates``."""

    def generate(rng: random.Random, is_test: bool) -> Example:
        key, args, input_text, answer = sample(rng)
        return key, rng.choice(templates).format(*args), input_text, answer

    return generate


def _lookup_task(table: dict[str, str], templates: tuple[str, ...], rng: random.Random) -> TaskFn:
    """Memorisation task: each entry keeps one phrasing for test, the others for train."""
    entries = sorted(table)
    held_out = {entry: rng.randrange(len(templates)) for entry in entries}

    def generate(task_rng: random.Random, is_test: bool) -> Example:
        entry = task_rng.choice(entries)
        choices = [held_out[entry]] if is_test else [i for i in range(len(templates)) if i != held_out[entry]]
        t = task_rng.choice(choices)
        return (entry, t), templates[t].format(entry), "", table[entry]

    return generate


def _sample_add(rng: random.Random) -> Sample:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return (a, b), (a, b), "", str(a + b)


def _sample_reverse(rng: random.Random) -> Sample:
    words = rng.sample(WORDS, rng.randint(3, 5))
    return tuple(words), (), " ".join(words), " ".join(reversed(words))


def _sample_sort(rng: random.Random) -> Sample:
    digits = [rng.randint(0, 9) for _ in range(rng.randint(3, 6))]
    text = "".join(map(str, digits))
    return text, (), text, "".join(map(str, sorted(digits)))


def _sample_count(rng: random.Random) -> Sample:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
    return tuple(words), (), " ".join(words), str(len(words))


TEMPLATES: dict[str, tuple[str, ...]] = {
    "add": ("What is {} plus {}?", "Add {} and {}.", "Compute the sum of {} and {}."),
    "reverse_words": ("Reverse the order of these words.", "Write these words in reverse order.",
                      "List the words below backwards."),
    "sort_digits": ("Sort these digits in ascending order.", "Arrange the digits from smallest to largest.",
                    "Put these digits in increasing order."),
    "count_words": ("How many words are in this list?", "Count the words below.",
                    "Give the number of words in this list."),
    "capital": ("What is the capital of {}?", "Name the capital city of {}.", "Which city is the capital of {}?"),
    "antonym": ('What is the opposite of "{}"?', 'Give an antonym for "{}".', 'Which word means the opposite of "{}"?'),
    "next_letter": ('Which letter comes after "{}" in the alphabet?', 'What is the next letter after "{}"?',
                    'Give the letter that follows "{}".'),
}
TASK_NAMES: tuple[str, ...] = tuple(TEMPLATES)


def _make_tasks(rng: random.Random) -> dict[str, TaskFn]:
    """Build the task generators in :data:`TASK_NAMES` order; lookup tasks draw held-out phrasings from ``rng``."""
    samplers = {"add": _sample_add, "reverse_words": _sample_reverse,
                "sort_digits": _sample_sort, "count_words": _sample_count}
    tables = {"capital": CAPITALS, "antonym": ANTONYMS, "next_letter": NEXT_LETTER}
    tasks = {name: _algorithmic_task(TEMPLATES[name], fn) for name, fn in samplers.items()}
    tasks |= {name: _lookup_task(table, TEMPLATES[name], rng) for name, table in tables.items()}
    return {name: tasks[name] for name in TASK_NAMES}


def _generate_split(
    tasks: dict[str, TaskFn], n: int, rng: random.Random, is_test: bool, forbidden: set[tuple[str, Hashable]]
) -> tuple[list[dict[str, str]], set[tuple[str, Hashable]]]:
    """Generate ``n`` rows balanced across tasks, skipping items whose key is in ``forbidden``."""
    names = list(tasks)
    rows: list[dict[str, str]] = []
    keys: set[tuple[str, Hashable]] = set()
    for i in range(n):
        name = names[i % len(names)]
        for _ in range(1000):
            key, instruction, input_text, answer = tasks[name](rng, is_test)
            if (name, key) not in forbidden:
                break
        else:  # pragma: no cover - only reachable with absurd split sizes
            raise RuntimeError(f"could not draw a held-out item for task {name!r}")
        keys.add((name, key))
        rows.append({"prompt": format_prompt(instruction, input_text), "completion": answer, "task": name})
    rng.shuffle(rows)
    return rows, keys


def builtin_instruction_dataset(num_train: int = 4000, num_test: int = 400, seed: int = 0) -> DatasetDict:
    """Build the offline instruction dataset with ``train`` and ``test`` splits.

    Columns: ``prompt`` (from :func:`format_prompt`), ``completion`` (the answer, without
    any eos token) and ``task`` (one of :data:`TASK_NAMES`). Rows are balanced across the
    tasks and fully determined by ``seed``. The test split is held out: algorithmic items
    (operands, word lists, digit strings) used in test never occur in train, and each
    lookup entry (country, word, letter) is tested under a phrasing never used for it in
    train, so no test prompt appears in train.
    """
    rng = random.Random(seed)
    tasks = _make_tasks(rng)
    test_rows, test_keys = _generate_split(tasks, num_test, rng, True, set())
    train_rows, _ = _generate_split(tasks, num_train, rng, False, test_keys)
    return DatasetDict(train=Dataset.from_list(train_rows), test=Dataset.from_list(test_rows))


# --- Tokenizer ---


def _chat_template() -> str:
    """Jinja chat template consistent with :func:`format_prompt` (strings JSON-escaped)."""
    q = json.dumps
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{{ message['content'] + " + q(SECTION_SEP) + " }}"
        "{%- elif message['role'] == 'user' -%}"
        "{{ " + q(INSTRUCTION_HEADER) + " + message['content'] + " + q(SECTION_SEP) + " }}"
        "{%- elif message['role'] == 'assistant' -%}{{ " + q(RESPONSE_HEADER) + " }}"
        "{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}"
        "{%- else -%}{{ raise_exception('Unsupported role: ' + message['role']) }}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ " + q(RESPONSE_HEADER) + " }}{%- endif -%}"
    )


def train_builtin_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer on ``texts``.

    Digits are always split into single-digit tokens before byte-level splitting. The
    result has ``<|begin_of_text|>``/``<|end_of_text|>``/``<|pad|>`` as bos/eos/pad tokens,
    ``model_max_length=512`` and a chat template in which a user turn followed by the
    generation prompt renders exactly as ``format_prompt(content)`` and an assistant turn
    renders as its content plus the eos token. No special tokens are added automatically
    when encoding.
    """
    specials = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=512,
        chat_template=_chat_template(),
    )


# --- Loading ---

_ALPACA_COLUMNS = ("instruction", "input", "output")


def _normalise_columns(ds: Dataset) -> Dataset:
    """Map one split to prompt/completion form (or leave it if it already is)."""
    cols = set(ds.column_names)
    if {"prompt", "completion"} <= cols or "messages" in cols:
        return ds
    if {"instruction", "output"} <= cols:

        def to_prompt(row: dict[str, Any]) -> dict[str, str]:
            return {
                "prompt": format_prompt(row["instruction"] or "", row.get("input") or ""),
                "completion": row["output"] or "",
            }

        return ds.map(to_prompt, remove_columns=ds.column_names)
    raise ValueError(
        f"Unsupported dataset columns {sorted(cols)}; expected 'prompt'+'completion', 'messages', "
        f"or Alpaca-style {list(_ALPACA_COLUMNS)} ('input' optional)."
    )


def load_instruction_dataset(
    name: str = "builtin", split_test_size: float = 0.05, seed: int = 0, **load_kwargs: Any
) -> DatasetDict:
    """Load an instruction dataset as a ``DatasetDict`` with ``train`` and ``test`` splits.

    ``"builtin"`` returns :func:`builtin_instruction_dataset` for ``seed``. Anything else
    goes to :func:`hf_cut.data.sources.read_splits` (a Hub name, a local directory, a builder
    such as ``"json"`` with ``data_files=...``, a ``save_to_disk`` folder); a path ending in
    ``.json``, ``.jsonl`` or ``.csv`` is loaded as a data file. Alpaca-style columns are mapped to
    prompt/completion; prompt/completion and conversational (``messages``) data are kept
    as they are; other layouts raise ``ValueError``. Without a ``test`` split, a
    ``validation`` split is used if present, otherwise ``split_test_size`` of ``train``
    is split off deterministically with ``seed``.
    """
    if name == "builtin":
        return builtin_instruction_dataset(seed=seed)
    loaded = read_splits(name, **load_kwargs)
    train = _normalise_columns(loaded["train"])
    test_split = "test" if "test" in loaded else "validation" if "validation" in loaded else None
    if test_split is not None:
        return DatasetDict(train=train, test=_normalise_columns(loaded[test_split]))
    parts = train.train_test_split(test_size=split_test_size, seed=seed)
    return DatasetDict(train=parts["train"], test=parts["test"])
