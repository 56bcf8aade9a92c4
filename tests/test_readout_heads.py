"""The readout's small pieces, against the model's own computation or a hand value: the depth L from each config
spelling, the PEFT wrapper's base model, every classifier head family (RoBERTa, BERT, DistilBERT, DeBERTa) on its own
last hidden state, and the per-example losses of regression, single- and multi-label classification."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig, BertForSequenceClassification, DebertaConfig, DebertaForSequenceClassification, DebertaV2Config, DebertaV2ForSequenceClassification,
    DistilBertConfig, DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel, MptConfig, MptForCausalLM,
    RobertaConfig, RobertaForSequenceClassification,
)  # fmt: skip

from hf_cut.readout import base_model, classifier_head, num_layers, per_example_loss, problem_type

SMALL = dict(vocab_size=40, hidden_size=16, num_attention_heads=2, intermediate_size=32)


@pytest.mark.parametrize("model,depth", [
    (lambda: GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=3, n_head=2)), 3),  # n_layer
    (lambda: MptForCausalLM(MptConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2)), 2),  # n_layers
    (lambda: SimpleNamespace(config=SimpleNamespace(num_layers=5)), 5),  # num_layers (T5-style)
    (lambda: SimpleNamespace(config=SimpleNamespace(n_layers=7)), 7),  # n_layers, without an attribute map
    (lambda: SimpleNamespace(config=SimpleNamespace(num_hidden_layers=1)), 1),  # one layer is a depth
    (lambda: SimpleNamespace(config=SimpleNamespace(num_hidden_layers=0, n_layer=4)), 4),  # 0 is no depth
    # a multimodal config: the text model's depth, not the vision tower's
    (lambda: SimpleNamespace(config=SimpleNamespace(num_hidden_layers=24, get_text_config=lambda: SimpleNamespace(
        num_hidden_layers=6))), 6),
])  # fmt: skip
def test_depth_from_every_config_spelling(model, depth):
    assert num_layers(model()) == depth


def test_no_depth_is_refused_by_name():
    class Odd(nn.Module):
        config = SimpleNamespace(depth=3)

    with pytest.raises(ValueError, match=re.escape("Cannot find the number of layers of Odd in its config.")):
        num_layers(Odd())


def test_base_model_of_a_peft_wrapper():
    from peft import LoraConfig, get_peft_model

    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2))
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn"]))
    assert base_model(wrapped) is model and base_model(model) is model


@pytest.mark.parametrize("make", [
    lambda: RobertaForSequenceClassification(RobertaConfig(**SMALL, num_hidden_layers=2, num_labels=3,
                                                           max_position_embeddings=40, pad_token_id=1)),
    lambda: BertForSequenceClassification(BertConfig(**SMALL, num_hidden_layers=2, num_labels=3)),
    lambda: DistilBertForSequenceClassification(DistilBertConfig(vocab_size=40, dim=16, n_layers=2, n_heads=2,
                                                                 hidden_dim=32, num_labels=3)),
    lambda: DebertaForSequenceClassification(DebertaConfig(**SMALL, num_hidden_layers=2, num_labels=3)),
    lambda: DebertaV2ForSequenceClassification(DebertaV2Config(**SMALL, num_hidden_layers=2, num_labels=3)),
], ids=["roberta", "bert", "distilbert", "deberta", "deberta-v2"])  # fmt: skip
def test_every_head_reproduces_the_models_logits(make):
    """ψ applied to the first token of the last hidden state gives the model's own logits (eval: no dropout)."""
    torch.manual_seed(0)
    model = make().eval()
    ids = torch.randint(3, 40, (4, 7))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        head = classifier_head(model)(out.hidden_states[-1][:, 0])
    assert torch.allclose(head, out.logits, atol=1e-5), (head - out.logits).abs().max()


def test_the_bert_head_drops_out_in_training():
    """In training the head applies the model's dropout (p = 0.5 here): its output differs from evaluation's."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SMALL, num_hidden_layers=2, num_labels=3,
                                                     hidden_dropout_prob=0.5))  # fmt: skip
    h = torch.randn(8, 16)
    head = classifier_head(model)
    with torch.no_grad():
        trained = head(h)  # a new model is in training mode
        model.eval()
        evaluated = head(h)
    assert not torch.allclose(trained, evaluated)


def test_an_unknown_head_is_refused_by_name():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2))
    message = ("No shared readout for GPT2LMHeadModel (model_type 'gpt2'): supported heads are RoBERTa-style "
               "(classifier on the first token), BERT-style (pooler + classifier), DistilBERT and DeBERTa.")  # fmt: skip
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        classifier_head(model)


def test_problem_type_as_transformers_infers_it():
    assert problem_type(SimpleNamespace(problem_type=None, num_labels=1)) == "regression"
    assert problem_type(SimpleNamespace(problem_type=None, num_labels=3)) == "single_label_classification"
    given = SimpleNamespace(problem_type="multi_label_classification", num_labels=3)
    assert problem_type(given) == "multi_label_classification"


def test_per_example_losses_by_hand():
    # regression: (prediction − target)², one per example
    assert per_example_loss(torch.tensor([[1.5], [0.0]]), torch.tensor([0.5, 2.0]), "regression").tolist() == [1.0, 4.0]
    # single label: −log softmax at the label; logits (0, ln 3): p = (1/4, 3/4)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    got = per_example_loss(logits, torch.tensor([1, 0]), "single_label_classification")
    assert got.tolist() == pytest.approx([-math.log(0.75), -math.log(0.25)])
    # multi label: the mean over labels of −[y log σ(z) + (1 − y) log(1 − σ(z))]; σ(0) = 1/2, σ(ln 3) = 3/4
    labels = torch.tensor([[1, 0], [0, 1]])
    expected = [(-math.log(0.5) - math.log(0.25)) / 2, (-math.log(0.5) - math.log(0.75)) / 2]
    assert per_example_loss(logits, labels, "multi_label_classification").tolist() == pytest.approx(expected)
