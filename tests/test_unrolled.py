"""Tests for the unrolled transformer (hf_cut.models.unrolled), its data (hf_cut.data.video), the denoising γ sweep
(hf_cut.evaluation.denoise_sweep) and recipes/unrolled_denoise.py. The reference computations are numpy, written
from the paper's formulas with frames as columns, independently of the model's tensor layout."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModel

from hf_cut import ConstrainedTrainer, ConstrainedTrainingArguments, EmbeddingNoise
from hf_cut.readout.sequence_head import ClassifierReadoutRequest
from hf_cut.data.video import find_videos, load_video_dataset, load_video_folder
from hf_cut.evaluation.denoise_sweep import denoise_sweep, evaluate_denoiser, rmse_table, write_denoise_sweep
from hf_cut.models.unrolled import UnrolledTransformerConfig, UnrolledTransformerModel
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "unrolled_denoise.py"
UNROLLED_YAMLS = sorted((ROOT / "recipes").glob("unrolled_*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACT = {"relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh, "identity": lambda a: a}


def tiny_model(n=6, T=4, d=3, L=2, activation="tanh", seed=0, scale=0.5) -> UnrolledTransformerModel:
    config = UnrolledTransformerConfig(frame_dim=n, num_frames=T, hidden_size=d, num_layers=L, activation=activation)
    torch.manual_seed(seed)
    model = UnrolledTransformerModel(config)
    with torch.no_grad():  # weights large enough that the softmax is far from uniform
        for p in model.parameters():
            p.copy_(scale * torch.randn_like(p))
    return model.eval()


def numpy_layers(model: UnrolledTransformerModel, frames: np.ndarray) -> list[np.ndarray]:
    """X_0 … X_L for ONE clip, ``frames`` [T, n]; every X_l is n × T (frames as columns), straight from the formulas:
    Z = V X · softmax((Q X)ᵀ (K X)) with the softmax over each column, X' = σ(W Z + U X)."""
    act = ACT[model.config.activation]
    X = frames.T.astype(np.float64)
    states = [X]
    for layer in model.layers:
        Q, K, V, W, U = (getattr(layer, name).detach().double().numpy() for name in "qkvwu")
        A = (Q @ X).T @ (K @ X)  # T × T
        E = np.exp(A - A.max(axis=0, keepdims=True))
        P = E / E.sum(axis=0, keepdims=True)  # column-stochastic
        Z = V @ X @ P
        X = act(W @ Z + U @ X)
        states.append(X)
    return states


def numpy_losses(model, noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """[N, L + 1] per-example ½ Σ_t ‖x_t − [X_l]_t‖²."""
    return np.array(
        [[0.5 * ((c.T - X) ** 2).sum() for X in numpy_layers(model, x)] for x, c in zip(noisy, clean)]
    )


# --- The model ---


@pytest.mark.parametrize("activation", ["tanh", "relu", "identity"])
def test_layers_match_numpy_formulas(activation):
    model = tiny_model(activation=activation)
    rng = np.random.default_rng(0)
    noisy, clean = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    out = model(
        torch.tensor(noisy, dtype=torch.float32), labels=torch.tensor(clean, dtype=torch.float32),
        output_hidden_states=True,
    )
    assert len(out.hidden_states) == 3 and out.logits.shape == (3, 4, 6)
    for b in range(3):
        for l, X in enumerate(numpy_layers(model, noisy[b])):
            np.testing.assert_allclose(out.hidden_states[l][b].detach().numpy().T, X, rtol=1e-4, atol=1e-5)
    expected = numpy_losses(model, noisy, clean)
    np.testing.assert_allclose(out.example_losses.numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(out.layer_losses.detach().numpy(), expected.mean(0), rtol=1e-4)
    assert out.loss == out.layer_losses[-1]
    # ℓ_0 is the loss of the input itself; the attention is column-stochastic (convex combinations of V X's columns)
    assert out.layer_losses[0].item() == pytest.approx(0.5 * ((noisy - clean) ** 2).sum() / 3, rel=1e-5)
    probs = model.layers[0].attention(torch.tensor(noisy, dtype=torch.float32))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3, 4))


def test_layer_readout_detaches_only_flagged_losses():
    model = tiny_model(L=3).train()
    x, y = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    out = model(x, labels=y, layer_readout=ClassifierReadoutRequest(grad_layers=[False, True, False]))
    weights = list(model.parameters())

    def grad_norm(loss):
        grads = torch.autograd.grad(loss, weights, retain_graph=True, allow_unused=True)
        return sum(g.abs().sum().item() for g in grads if g is not None)

    assert [grad_norm(loss) > 0 for loss in out.layer_losses[1:]] == [True, False, True]  # ℓ_0 has no weights
    assert out.layer_logits.shape == (4, 2, 4, 6)
    # the detached layer still passes its gradient to the next layers: ℓ_L reaches layer 1's weights
    out.layer_losses[-1].backward()
    assert model.layers[0].q.grad is not None and model.layers[0].q.grad.abs().sum() > 0


def test_config_validation_and_interface():
    with pytest.raises(ValueError, match="activation"):
        UnrolledTransformerConfig(activation="swish")
    with pytest.raises(ValueError, match="frame_dim"):
        UnrolledTransformerConfig(frame_dim=0)
    config = UnrolledTransformerConfig(num_layers=4)
    assert config.num_hidden_layers == 4 and config.model_type == "unrolled_transformer"
    model = UnrolledTransformerModel(UnrolledTransformerConfig(frame_dim=6, num_layers=2))
    assert model.base_model is model and model.supports_layer_readout
    assert isinstance(model.get_input_embeddings(), torch.nn.Identity)
    torch.testing.assert_close(model.layers[0].u, torch.eye(6), atol=0.2, rtol=0)  # U_l starts near the identity
    with pytest.raises(ValueError, match="frame_dim"):
        model(torch.zeros(1, 4, 5))
    assert model(torch.zeros(1, 4, 6)).loss is None


def test_save_load_round_trip(tmp_path):
    model = tiny_model(L=3)
    x = torch.randn(2, 4, 6)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).to_dict()["frame_dim"] == 6
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is UnrolledTransformerModel
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name


# --- The noise hook ---


def test_noise_hook_perturbs_frames_with_std_gamma_sigma():
    model = tiny_model(n=64, T=8, d=4, L=1)
    frames = 0.5 + 0.3 * torch.randn(16, 8, 64)
    sigma_x = frames.std().item()
    with torch.no_grad():
        clean = model(frames, output_hidden_states=True).hidden_states[0]
        noise = EmbeddingNoise(1.5).attach(model)
        noisy = model(frames, output_hidden_states=True).hidden_states[0]
        assert torch.equal(clean, frames)
        eps = noisy - frames
        assert eps.mean().item() == pytest.approx(0.0, abs=0.02)
        assert eps.std().item() == pytest.approx(1.5 * sigma_x, rel=0.03)
        noise.remove()
        assert torch.equal(model(frames, output_hidden_states=True).hidden_states[0], frames)


# --- Data ---


def test_builtin_data_is_deterministic_and_noisy():
    ds = load_video_dataset("digits", frame_size=12, num_frames=5, noise_std=0.1, num_train_examples=40,
                            num_test_examples=20)
    assert (len(ds["train"]), len(ds["test"])) == (40, 20)
    row = ds["train"][0]
    assert row["labels"].shape == (5, 144) and row["noisy_frames"].dtype == torch.float32
    clean, noisy = ds["train"][:]["labels"], ds["train"][:]["noisy_frames"]
    assert 0.0 <= clean.min() and clean.max() <= 1.0
    assert (noisy - clean).std().item() == pytest.approx(0.1, rel=0.05)
    again = load_video_dataset("digits", frame_size=12, num_frames=5, noise_std=0.1, num_train_examples=40,
                               num_test_examples=20)
    assert torch.equal(again["test"][:]["noisy_frames"], ds["test"][:]["noisy_frames"])
    # the frames move: consecutive frames differ
    assert not torch.equal(clean[:, 0], clean[:, 1])
    shapes = load_video_dataset("shapes", frame_size=10, num_frames=4, num_train_examples=8, num_test_examples=4)
    assert shapes["test"][0]["labels"].shape == (4, 100)
    with pytest.raises(ValueError, match="data_dir"):
        load_video_dataset("ucsd")


def _write_video(folder: Path, num_frames: int, seed: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for t in range(num_frames):
        Image.fromarray(rng.integers(0, 256, size=(24, 36), dtype=np.uint8)).save(folder / f"{t:03d}.tif")


def test_video_folder_loader_ucsd_layout(tmp_path):
    root = tmp_path / "UCSDped2"
    _write_video(root / "Train" / "Train001", 20, 0)
    _write_video(root / "Train" / "Train002", 13, 1)
    _write_video(root / "Test" / "Test001", 10, 2)
    _write_video(root / "Test" / "Test001_gt", 10, 3)  # masks: skipped
    assert [Path(v).name for v in find_videos(str(root / "Test"))] == ["Test001"]
    ds = load_video_dataset("ucsd", data_dir=str(root), frame_size=8, num_frames=4, clip_stride=4, noise_std=0.0)
    # Train001: 20 frames → 5 clips, Train002: 13 → 3; Test001: 10 → 2
    assert (len(ds["train"]), len(ds["test"])) == (8, 2)
    assert ds["train"][0]["labels"].shape == (4, 64)
    assert ds["train"]["video"][:6] == ["Train001"] * 5 + ["Train002"] and ds["train"]["start"][:2] == [0, 4]
    assert torch.equal(ds["test"][:]["noisy_frames"], ds["test"][:]["labels"])  # noise_std = 0
    # a folder without a test folder is split by video
    split = load_video_folder(str(root / "Train"), frame_size=8, num_frames=4, test_fraction=0.5)
    assert set(split["train"]["video"]).isdisjoint(split["test"]["video"])


# --- Trainer, sweep ---


@pytest.fixture(scope="module")
def small_data():
    return load_video_dataset("shapes", frame_size=8, num_frames=4, noise_std=0.2, num_train_examples=64,
                              num_test_examples=24)


def test_constrained_trainer_layer_losses_and_duals(tmp_path, small_data):
    model = tiny_model(n=64, T=4, d=4, L=3, activation="relu", scale=0.05)
    with torch.no_grad():
        for layer in model.layers:
            layer.u.copy_(torch.eye(64))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = ConstrainedTrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=16, max_steps=4,
        learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, dual_lr=0.5, resilience_coef=None,
        descent_alpha=0.5, seed=0,
    )
    trainer = ConstrainedTrainer(model, args, train_dataset=small_data["train"])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "layer_loss/0" in h]
    assert len(logs) == 4
    assert {f"dual/{l}" for l in (1, 2, 3)} <= set(logs[-1]) and {f"layer_loss/{l}" for l in range(4)} <= set(logs[-1])
    assert trainer.dual_variables.shape == (3,) and (trainer.dual_variables > 0).any()  # α = 0.5 is violated
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    # the layer losses the trainer reads equal the numpy ones on a batch
    batch = small_data["test"][:8]
    model.eval()
    with torch.no_grad():
        out = trainer.model(**batch, layer_readout=ClassifierReadoutRequest(grad_layers=trainer._grad_layers()))
    expected = numpy_losses(model, batch["noisy_frames"].numpy(), batch["labels"].numpy()).mean(0)
    np.testing.assert_allclose(out.layer_losses.numpy(), expected, rtol=1e-4)
    metrics = trainer.evaluate(small_data["test"])
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_layer_loss/3"])


def test_denoise_sweep_records_and_plots(tmp_path, small_data):
    models = {"constrained": tiny_model(n=64, T=4, d=4, L=2, scale=0.05),
              "unconstrained": tiny_model(n=64, T=4, d=4, L=2, seed=1, scale=0.05)}
    records = denoise_sweep(models, small_data["test"], gammas=[0.0, 1.0], seeds=[0, 1], alpha=0.1, batch_size=10)
    assert len(records) == 2 * 2 * 2
    first = records[0]
    assert {"rmse", "layer_losses", "layer_rmse", "pair_satisfaction", "example_satisfaction", "monotone"} <= set(first)
    # RMSE is the per-pixel root mean squared error of X_L over the whole set
    model = models["constrained"]
    data = small_data["test"][:]
    with torch.no_grad():
        x_L = model(data["noisy_frames"]).logits
    assert first["rmse"] == pytest.approx((x_L - data["labels"]).pow(2).mean().sqrt().item(), rel=1e-5)
    # γ = 0 is deterministic; γ > 0 draws the same noise for the same seed
    again = evaluate_denoiser(model, small_data["test"], gamma=1.0, seed=1, batch_size=10)
    same = next(r for r in records if r["model"] == "constrained" and r["gamma"] == 1.0 and r["seed"] == 1)
    assert again["rmse"] == pytest.approx(same["rmse"], rel=1e-6)
    assert same["layer_losses"][0] > first["layer_losses"][0]  # more noise on the input
    assert not model.get_input_embeddings()._forward_hooks  # the hook is removed
    paths = write_denoise_sweep(records, str(tmp_path))
    assert Path(paths["rmse"]).read_bytes()[:8] == PNG_MAGIC and Path(paths["layers"]).read_bytes()[:8] == PNG_MAGIC
    assert "RMSE constrained" in rmse_table(records) and json.loads(Path(paths["json"]).read_text())["aggregates"]
    # one file name for every task; a directory of an earlier release (denoise_sweep.json) is still read
    from hf_cut.evaluation.report import load_sweep

    assert Path(paths["json"]).name == "ood_sweep.json" and load_sweep(str(tmp_path)).records == records
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    Path(paths["json"]).rename(legacy / "denoise_sweep.json")
    assert load_sweep(str(legacy)).records == records


# --- Recipe ---


@pytest.mark.parametrize("path", UNROLLED_YAMLS, ids=lambda p: p.name)
def test_unrolled_yamls_parse(path):
    recipe = load_script(RECIPE)
    parser = recipe.make_parser()
    config = yaml.safe_load(path.read_text())
    known = {action.dest for action in parser._actions}
    assert not set(config) - known, f"unknown keys in {path.name}"
    script_args, training_args = parser.parse_args_and_config(["--config", str(path)])
    assert script_args.num_layers == 10 and training_args.constrained
    assert Path(recipe.DEFAULT_CONFIG).name == "unrolled_denoise.yaml"


def test_default_recipe_end_to_end(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(RECIPE), "--config", str(ROOT / "recipes" / "unrolled_denoise.yaml"),
        "--max_steps", "3", "--num_train_examples", "32", "--num_test_examples", "16", "--num_layers", "3",
        "--hidden_size", "4", "--frame_size", "10", "--num_frames", "4", "--sweep_gammas", "0", "1",
        "--sweep_seeds", "0", "--logging_steps", "1", "--output_dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "layer_losses.json").read_text())
    assert summary["num_layers"] == 3 and len(summary["layer_losses"]) == 4 and len(summary["dual_variables"]) == 3
    assert summary["global_step"] == 3 and summary["constrained"] is True
    assert summary["data"]["frame_size"] == 10 and set(summary["sweep"]) == {"0.0", "1.0"}
    for name in ("layer_losses.png", "metric_vs_gamma.png", "loss_vs_layer.png"):  # every task's plot names
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert (out / "model.safetensors").is_file() and "RMSE against the test perturbation" in proc.stdout
    # the sweep CLI over the saved model reuses its test clips
    cli = load_script(ROOT / "eval" / "ood_sweep_denoise.py")
    cli.main(cli.make_parser().parse_args(
        ["--model", str(out), "--labels", "constrained", "--gammas", "0", "--seeds", "0", "--output_dir",
         str(tmp_path / "sweep")]
    ))
    sweep = json.loads((tmp_path / "sweep" / "ood_sweep.json").read_text())  # every task's file name
    assert sweep["records"][0]["rmse"] == pytest.approx(summary["rmse"], rel=1e-6)


def test_impulse_noise_by_hand():
    """Salt-and-pepper: p = 0 changes nothing, p = 1 leaves only 0s and 1s (about half each), p = 0.2 changes about a
    fifth of the pixels; the clean targets never change and the same seed gives the same clips."""
    from hf_cut.data.video import impulse_noise

    ds = load_video_dataset("shapes", frame_size=8, num_frames=4, noise_std=0.2, num_train_examples=2,
                            num_test_examples=64)["test"]  # fmt: skip
    noisy, clean = ds[:]["noisy_frames"], ds[:]["labels"]
    assert torch.equal(impulse_noise(ds, 0.0)[:]["noisy_frames"], noisy)
    full = impulse_noise(ds, 1.0)[:]["noisy_frames"]
    assert set(full.unique().tolist()) == {0.0, 1.0} and abs(full.mean().item() - 0.5) < 0.02
    some = impulse_noise(ds, 0.2, seed=3)
    changed = (some[:]["noisy_frames"] != noisy).float().mean().item()
    assert abs(changed - 0.2) < 0.01 and torch.equal(some[:]["labels"], clean)
    assert torch.equal(impulse_noise(ds, 0.2, seed=3)[:]["noisy_frames"], some[:]["noisy_frames"])
    with pytest.raises(ValueError, match="fraction"):
        impulse_noise(ds, 1.5)


def test_one_sweep_entry_point_for_denoising(small_data):
    """hf_cut.evaluation.sweep("denoising", …): the same records as a direct evaluation of each model, aggregated
    over the noise seeds by hand; an unknown task or option is refused by name."""
    from hf_cut.evaluation import sweep

    model = tiny_model(n=64, T=4, d=4, L=2, scale=0.05)
    result = sweep("denoising", {"m": model}, [0.0, 1.0], dataset=small_data["test"], seeds=[0, 1], batch_size=10)
    for gamma in (0.0, 1.0):
        by_seed = [evaluate_denoiser(model, small_data["test"], gamma=gamma, seed=s, batch_size=10)["rmse"]
                   for s in (0, 1)]  # fmt: skip
        assert [r["rmse"] for r in result.records if r["gamma"] == gamma] == pytest.approx(by_seed, rel=1e-6)
        row = next(a for a in result.aggregates if a["gamma"] == gamma)
        assert row["rmse_mean"] == pytest.approx(sum(by_seed) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="task"):
        sweep("segmentation", ["m"], [0.0])
    with pytest.raises(ValueError, match="split"):  # classification's option (`limit` is every task's now)
        sweep("denoising", {"m": model}, [0.0], dataset=small_data["test"], split="test")
    limited = sweep("denoising", {"m": model}, [0.0], dataset=small_data["test"], limit=3, batch_size=10)
    assert limited.records[0]["num_examples"] == 3


def test_monotone_share_is_the_share_of_monotone_records():
    from hf_cut.evaluation.denoise_sweep import aggregate_denoise_records

    records = [{"model": "m", "gamma": 0.0, "seed": s, "rmse": 0.1 * s, "layer_losses": [1.0, 0.5], "monotone": b}
               for s, b in enumerate([True, False, True])]  # fmt: skip
    (row,) = aggregate_denoise_records(records)
    assert row["monotone_share"] == pytest.approx(2 / 3) and row["rmse_mean"] == pytest.approx(0.1)
