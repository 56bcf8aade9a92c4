"""The one dispatch from a dataset's name to its splits, for every text task: a local data file, a folder written by
``DatasetDict.save_to_disk``, or a name for ``datasets.load_dataset`` (a Hub dataset, a local dataset folder)."""

from __future__ import annotations

import os
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

__all__ = ["read_splits"]

_FILE_BUILDERS = {"csv": "csv", "json": "json", "jsonl": "json"}


def read_splits(name: str, dataset_config: str | None = None, **load_kwargs: Any) -> DatasetDict:
    """The splits ``name`` holds, with a ``train`` split (a single ``Dataset`` becomes ``train``).

    ``.csv`` / ``.json`` / ``.jsonl`` paths are read as data files (unless ``data_files`` is given), folders with a
    ``dataset_dict.json`` with ``load_from_disk``, anything else with ``load_dataset(name, dataset_config, …)``.
    """
    suffix = name.lower().rsplit(".", 1)[-1]
    if suffix in _FILE_BUILDERS and "data_files" not in load_kwargs:
        loaded = load_dataset(_FILE_BUILDERS[suffix], data_files=name, **load_kwargs)
    elif os.path.isfile(os.path.join(name, "dataset_dict.json")):
        loaded = load_from_disk(name)
    else:
        loaded = load_dataset(name, dataset_config, **load_kwargs)
    if isinstance(loaded, Dataset):
        loaded = DatasetDict(train=loaded)
    if not isinstance(loaded, DatasetDict):
        raise TypeError(f"Expected a Dataset or DatasetDict, got {type(loaded).__name__} (streaming is unsupported).")
    if "train" not in loaded:
        raise ValueError(f"Dataset {name!r} has no 'train' split (splits: {list(loaded)}).")
    return loaded
