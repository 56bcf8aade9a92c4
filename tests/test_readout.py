"""Layer losses through the shared readout against a naive full-logits computation."""

import pytest
import torch
import torch.nn.functional as F

from hf_cut.readout import causal_lm as readout  # the module that holds the kernel call
from hf_cut.readout import LayerReadoutRequest, add_layer_readout, find_final_norm
from tests.conftest import tiny_causal_lm

ARCHS = ["llama", "qwen2", "mistral", "gpt2"]
# the wider matrix: Gemma 3 (scaled embeddings, its own norms), Qwen3, Phi-3, OLMo 2, GPT-NeoX (head `embed_out`)
WIDER_ARCHS = ["gemma3", "qwen3", "phi3", "olmo2", "gpt_neox"]
VOCAB = 64


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (3, 11), generator=g)
    attention = torch.ones_like(ids)
    attention[1, 8:] = 0  # right padding
    labels = ids.clone()
    labels[:, :4] = -100  # prompt tokens are not trained on
    labels[attention == 0] = -100
    return ids, attention, labels


def _naive_token_nll(model, ids, attention, labels):
    """[L + 1, B, T − 1] per-token NLL by building every layer's full logits."""
    out = model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
    norm = find_final_norm(model.base_model)
    L = len(out.hidden_states) - 1
    rows = []
    for layer, h in enumerate(out.hidden_states):
        # the last state is already normalised; the head is the model's own (GPT-NeoX: embed_out)
        logits = out.logits if layer == L else model.get_output_embeddings()(norm(h))
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100)
        rows.append(nll)
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ARCHS + WIDER_ARCHS)
def test_layer_losses_equal_naive_full_logits(arch):
    model = tiny_causal_lm(arch, vocab_size=VOCAB, num_layers=3)
    ids, attention, labels = _batch()
    naive = _naive_token_nll(model, ids, attention, labels)
    mask = labels[:, 1:] != -100
    expected = naive[:, mask].mean(dim=1)
    add_layer_readout(model)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest())
    assert out.layer_losses.shape == (4,)
    assert torch.allclose(out.layer_losses, expected, atol=1e-5)
    assert torch.allclose(out.loss, expected[-1], atol=1e-5)
    # the last layer equals the model's own loss
    own = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    assert torch.allclose(out.loss, own, atol=1e-5)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_gradients_match_naive_and_no_grad_layers_keep_values(fraction, monkeypatch):
    """Also on a token sample; every kernel call holds at most n rows (the last layer's tile)."""
    calls = []
    kernel = readout._chunked_log_probs
    monkeypatch.setattr(
        readout, "_chunked_log_probs", lambda head, h, *a, **kw: calls.append(h.shape[0]) or kernel(head, h, *a, **kw)
    )
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    ids, attention, labels = _batch()
    mask = labels[:, 1:] != -100
    n = int(mask.sum())
    k = n if fraction == 1.0 else round(fraction * n)
    torch.manual_seed(7)
    chosen = torch.randperm(n)[:k] if k < n else torch.arange(n)  # the readout's draw
    weights = torch.tensor([0.3, 0.5, 0.0, 1.0])
    (_naive_token_nll(model, ids, attention, labels)[:, mask][:, chosen].mean(1) * weights).sum().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    add_layer_readout(model)
    request = LayerReadoutRequest(fraction, grad_layers=[True, True, False])  # layer 2: weight 0, scored without grad
    torch.manual_seed(7)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=request)
    (out.layer_losses * weights).sum().backward()
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, expected[name], atol=1e-5), name
    # the last layer alone on n rows, then layers 0 and 1 (with grad) and layer 2 (without), n rows at most per call
    assert calls == ([n, k, k, k] if n // k < 2 else [n, 2 * k, k])


def test_token_fraction_scores_the_same_sample_at_every_layer():
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    ids, attention, labels = _batch()
    naive = _naive_token_nll(model, ids, attention, labels)
    mask = (labels[:, 1:] != -100).reshape(-1)
    n = int(mask.sum())
    add_layer_readout(model)
    torch.manual_seed(7)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest(0.25))
    torch.manual_seed(7)
    k = round(0.25 * n)
    chosen = torch.randperm(n)[:k]  # the draw the readout makes: uniform, without replacement
    per_token = naive.reshape(naive.shape[0], -1)[:, mask][:, chosen]
    assert out.num_sampled_tokens.item() == k
    assert torch.allclose(out.layer_losses, per_token.mean(1), atol=1e-5)
    # the objective (last layer) still uses every token
    assert torch.allclose(out.loss, naive[-1].reshape(-1)[mask].mean(), atol=1e-5)


def test_token_fraction_estimate_is_unbiased():
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    ids, attention, labels = _batch()
    add_layer_readout(model)
    full = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest())
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack(
            [
                model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest(0.3))
                .layer_losses
                for _ in range(400)
            ]
        )
    stderr = draws.std(0) / 400**0.5
    assert torch.all((draws.mean(0) - full.layer_losses.detach()).abs() < 4 * stderr + 1e-6)


def test_forward_without_request_is_unchanged():
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    ids, attention, labels = _batch()
    before = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    add_layer_readout(model)
    assert torch.equal(model(input_ids=ids, attention_mask=attention, labels=labels).loss, before)


def test_model_without_final_norm_is_rejected():
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    del model.model.norm
    with pytest.raises(ValueError, match="final norm"):
        add_layer_readout(model)


def test_token_fraction_on_a_batch_without_completion_tokens():
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    ids, attention, labels = _batch()
    add_layer_readout(model)
    out = model(
        input_ids=ids, attention_mask=attention, labels=torch.full_like(labels, -100), layer_readout=LayerReadoutRequest(0.25)
    )
    assert out.num_sampled_tokens.item() == 0
    assert torch.equal(out.layer_losses, torch.zeros(4)) and out.loss.item() == 0.0
    out.loss.backward()  # still connected to the graph


@pytest.mark.parametrize("arch", ARCHS + WIDER_ARCHS)
def test_noise_hook_sits_on_the_input_embeddings(arch):
    """The hook perturbs what the first layer reads: the output of the model's input-embedding module (for Gemma 3,
    after its √d scaling), in a forward of the model, with std γ·σ_x, σ_x the std of the clean embedding entries at
    the non-padding positions of the batch."""
    from hf_cut.noise import EmbeddingNoise

    model = tiny_causal_lm(arch, vocab_size=VOCAB, num_layers=2)
    ids, attention, _ = _batch()
    embeddings = model.get_input_embeddings()
    real = attention.bool()
    # the padding positions hold a token no real position holds, its embedding 50× larger: a σ_x that took them in
    # would be several times too large
    unused = next(t for t in range(VOCAB) if t not in ids[real].tolist())
    ids[~real] = unused
    with torch.no_grad():
        embeddings.weight[unused] *= 50
    clean = embeddings(ids).detach()
    assert clean.std().item() > 3 * clean[real].std().item()
    noise = EmbeddingNoise(0.5).attach(model)
    assert embeddings._forward_hooks
    seen = []
    after = embeddings.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    torch.manual_seed(0)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=attention)
    after.remove()
    noise.remove()
    assert not embeddings._forward_hooks
    sigma = clean[real].std().item()
    drawn = (seen[0] - clean)[real]
    # n = 30 real positions × width 32 = 960 draws of N(0, (0.5 σ_x)²): their sample std has a relative standard
    # error of 1/√(2(n − 1)) = 0.0228; 4 standard errors: rel 0.091 (measured: 0.026 = 1.2 standard errors, the same
    # for every architecture: seed 0 draws the same standard normals)
    assert drawn.numel() == 30 * model.config.hidden_size == 960
    assert drawn.std().item() == pytest.approx(0.5 * sigma, rel=4 / (2 * (drawn.numel() - 1)) ** 0.5)
    assert abs(drawn.mean().item()) < 4 * 0.5 * sigma / drawn.numel() ** 0.5  # μ = 0: within 4 standard errors


def test_unsupported_architecture_is_refused_with_what_was_looked_for():
    """A decoder without a final norm the readout can find (here: renamed away) fails before any compute."""
    model = tiny_causal_lm("llama", vocab_size=VOCAB)
    model.model.final = model.model.norm
    del model.model.norm
    with pytest.raises(ValueError, match="Cannot find the final norm of LlamaModel"):
        add_layer_readout(model)
