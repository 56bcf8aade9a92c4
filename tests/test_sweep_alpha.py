"""α of a sweep read from the saved models' run summaries when it is not given."""

from __future__ import annotations

import json
import logging

import pytest

from hf_cut.evaluation.sweep import ood_sweep, resolve_alpha
from tests.conftest import tiny_causal_lm


def _saved(path, tokenizer, alpha=None):
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_layers=2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if alpha is not None:  # what a recipe writes at the end of a run
        (path / "layer_losses.json").write_text(json.dumps({"descent_alpha": alpha, "constrained": True}))
    return str(path)


def test_alpha_from_the_run_summaries(tmp_path, tokenizer):
    a, b = _saved(tmp_path / "a", tokenizer, 0.05), _saved(tmp_path / "b", tokenizer, 0.05)
    assert resolve_alpha(None, [a, b]) == 0.05
    assert resolve_alpha(0.2, [a, b]) == 0.2  # given: as given
    result = ood_sweep([a], gammas=[0.0], limit=4, progress=False)
    assert result.config["alpha"] == 0.05


def test_models_trained_with_different_alphas_are_refused(tmp_path, tokenizer):
    a, b = _saved(tmp_path / "a", tokenizer, 0.05), _saved(tmp_path / "b", tokenizer, 0.1)
    with pytest.raises(ValueError, match=r"`alpha` \(--alpha\): the models were trained with different α"):
        resolve_alpha(None, [a, b])


def test_no_summary_measures_at_the_old_default_with_a_warning(tmp_path, tokenizer, caplog):
    a, b = _saved(tmp_path / "a", tokenizer, 0.05), _saved(tmp_path / "b", tokenizer)
    with caplog.at_level(logging.WARNING, logger="hf_cut.evaluation.sweep"):
        assert resolve_alpha(None, [a, b]) == 0.1
    assert f"no run summary records it for ['{b}']" in caplog.text
