"""One timed training run of the benchmark: a model, a trainer (plain TRL or hf-cut), N timed steps.

:func:`run` is the body of the fresh process ``bench/benchmark.py`` starts for every (shape, variant, repeat): it
builds the synthetic data and a randomly initialised Llama from the shape, trains ``warmup + steps`` optimizer steps,
and returns the per-step times and the peak memory of its own process. Nothing here is shared between runs, so RSS
peaks (CPU) and allocator peaks (GPU) never mix.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc (Linux) or psutil."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (MiB): ``ru_maxrss`` is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def make_tokenizer(vocab_size: int):
    """A word-level fast tokenizer over ``vocab_size`` tokens (``<pad>`` 0, ``<eos>`` 1, ``<unk>`` 2): the trainers
    only need its pad / eos ids, the data is already tokenised."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def make_dataset(shape: dict[str, Any], rows: int, seed: int):
    """Pre-tokenised rows of exactly ``seq`` random tokens: a short prompt (``prompt_len`` range) then a long
    completion ending in ``<eos>``; ``completion_mask`` marks the completion, so most tokens are trainable."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    seq, vocab = shape["seq"], shape["vocab"]
    lo, hi = shape["prompt_len"]
    input_ids, completion_mask = [], []
    for _ in range(rows):
        p = rng.randint(lo, hi)
        input_ids.append([rng.randrange(3, vocab) for _ in range(seq - 1)] + [1])
        completion_mask.append([0] * p + [1] * (seq - p))
    return Dataset.from_dict({"input_ids": input_ids, "completion_mask": completion_mask})


def make_model(shape: dict[str, Any], device: str, seed: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=max(shape["seq"], 2048),
        tie_word_embeddings=shape.get("tied", False),
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    dtype = getattr(torch, shape["dtype"])
    with torch.device(device):  # an 8B-wide model is initialised on the GPU directly
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def _step_timer(cuda: bool):
    """A callback that records ``time.perf_counter`` around every optimizer step (synchronising CUDA first). Added
    last, so its ``on_step_end`` follows hf-cut's dual step, which is part of the step's cost."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.begin: float | None = None
            self.times: list[float] = []

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            self.begin = self._now()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(self._now() - self.begin)

    return StepTimer()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One run. ``spec``: ``shape`` (dict), ``variant`` (dict with ``name``, ``trainer`` and constraint options),
    ``steps``, ``warmup``, ``seed``, ``threads`` (or None), ``activation_checkpointing``."""
    import warnings

    warnings.filterwarnings("ignore")
    import datasets
    import torch
    import transformers
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from hf_cut import ConstrainedSFTConfig, ConstrainedSFTTrainer

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    shape, variant = spec["shape"], spec["variant"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cuda = shape["device"] == "cuda"
    steps, warmup, seed = spec["steps"], spec["warmup"], spec["seed"]
    total_steps = warmup + steps
    out_dir = tempfile.mkdtemp(prefix="hf_cut_bench_")
    try:
        data = make_dataset(shape, rows=shape["batch"] * total_steps, seed=seed)
        model = make_model(shape, shape["device"], seed)
        common = dict(
            output_dir=out_dir,
            max_steps=total_steps,
            per_device_train_batch_size=shape["batch"],
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            max_length=shape["seq"],
            use_cpu=not cuda,
            bf16=shape["dtype"] == "bfloat16",
            activation_checkpointing=spec["activation_checkpointing"],
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=seed,
            data_seed=seed,
            dataloader_num_workers=0,
            **({"optim": shape["optim"]} if "optim" in shape else {}),
        )
        if variant["trainer"] == "sft":
            args, trainer_cls = SFTConfig(**common), SFTTrainer
        else:
            args, trainer_cls = ConstrainedSFTConfig(**common, **variant["options"]), ConstrainedSFTTrainer
        trainer = trainer_cls(
            model=model, args=args, train_dataset=data, processing_class=make_tokenizer(shape["vocab"])
        )
        trainer.remove_callback(PrinterCallback)  # the end-of-training summary, printed with `disable_tqdm`
        timer = _step_timer(cuda)
        trainer.add_callback(timer)

        grad_layers: list[int] = []  # per timed measured step: intermediate layers trained through the readout
        if hasattr(trainer, "_readout_request"):
            request = trainer._readout_request

            def counted_request():
                req = request()
                if trainer.model.training and trainer.state.global_step >= warmup:  # timed steps that measure
                    grad_layers.append(sum(req.grad_layers) if req.grad_layers is not None else trainer.num_layers)
                return req

            trainer._readout_request = counted_request

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            mem_before = torch.cuda.memory_allocated() / 2**20
        else:
            mem_before = _rss_mib()
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        if cuda:
            torch.cuda.synchronize()
            mem_peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            mem_peak = _peak_rss_mib()
        timed = timer.times[warmup:]
        duals = trainer.dual_variables.tolist() if hasattr(trainer, "dual_variables") else None
        return {
            "ok": True,
            "step_times_s": timed,
            "warmup_times_s": timer.times[:warmup],
            "mean_step_s": statistics.fmean(timed),  # with layer_loss_interval K, steps differ: the mean is the cost
            "median_step_s": statistics.median(timed),
            "train_wall_s": wall,
            "peak_mem_mib": mem_peak,
            "mem_before_train_mib": mem_before,
            "memory_kind": "cuda_max_allocated" if cuda else "peak_rss",
            "grad_layers_per_step": grad_layers,
            "final_duals": duals,
            "threads": torch.get_num_threads(),
        }
    except Exception as exc:  # noqa: BLE001 - reported, e.g. a CUDA OOM for one variant
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def fix_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own ``mmap``, returned to the OS
    when freed. By default glibc raises that threshold as big blocks are freed, after which freed tensors stay in
    the heap, fragment it, and the peak RSS reflects the order of past allocations rather than the live tensors
    (the same run measured 1.8 or 2.0 GiB). Returns False where there is no glibc (the peak is then taken as is)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold = -3  # <malloc.h>: also turns off the dynamic adjustment
        return bool(libc.mallopt(m_mmap_threshold, threshold))
    except (OSError, AttributeError):
        return False


def child_main(spec: dict[str, Any], conn) -> None:
    """Entry point of the fresh process: run, send the result back through the pipe."""
    if spec["shape"]["device"] == "cpu":
        fix_mmap_threshold()
    conn.send(run(spec))
    conn.close()
