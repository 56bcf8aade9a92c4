"""Train the tiny test model for a few steps and save its dual variables and weights (run under torchrun or alone).

    torchrun --nproc_per_node 2 tests/distributed/train_tiny.py OUT_DIR PER_DEVICE_BATCH [--save_steps N]
        [--resume CHECKPOINT] [--poison_rank R --poison_call N] [--max_steps N] [--layer_loss_interval K]
        [--step_sleep SECONDS] [--resilience_coef none|auto|β] [--engine ddp|zero3|fsdp2]

With --poison_rank, rank R turns decoder layer 1's output into NaN on its N-th training forward; every rank then
also saves the layer losses it handed to the dual variables (`seen`).

``--engine`` picks the data-parallel engine: plain DDP (accelerate's CPU default), DeepSpeed ZeRO-3 or FSDP2 (made to
run on CPU by ``tests/distributed/engines.py``). The saved weights are the full parameters on every rank.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from tests.conftest import WORDS, make_rows, tiny_causal_lm, train_args  # noqa: E402
from tests.distributed import exit_without_teardown  # noqa: E402
from tests.distributed.engines import engine_options  # noqa: E402


def main(out_dir: str, per_device_batch: int, save_steps: int | None, resume: str | None,
         poison_rank: int | None = None, poison_call: int = 1, max_steps: int = 4, layer_loss_interval: int = 1,
         step_sleep: float = 0.0, resilience_coef: str = "none", engine: str = "ddp") -> None:  # fmt: skip
    from pathlib import Path

    from hf_cut import ConstrainedSFTTrainer

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    # dual_lr 0.5 with resilience_coef "auto" (β = 1/3) is the implicit resilient step with η_d > β
    options = dict(per_device_train_batch_size=per_device_batch, max_steps=max_steps, dual_lr=0.5,
                   layer_loss_interval=layer_loss_interval, resilience_coef=resilience_coef)  # fmt: skip
    if save_steps:
        options.update(save_strategy="steps", save_steps=save_steps)
    options.update(engine_options(engine))
    args = train_args(Path(out_dir), **options)
    trainer = ConstrainedSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(make_rows()), processing_class=tokenizer
    )
    rank = trainer.accelerator.process_index
    seen = []
    if poison_rank is not None:
        from tests.test_reliability import _poison

        accumulate = trainer.duals.accumulate

        def spy(losses, count):
            seen.append((losses.detach().double().clone(), float(count)))
            return accumulate(losses, count)

        trainer.duals.accumulate = spy
        if rank == poison_rank:
            _poison(model, layer=1, on_call=poison_call)
    if step_sleep:  # slow steps, so that a test can kill the run between two checkpoints
        import time

        from transformers import TrainerCallback

        class Sleep(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                time.sleep(step_sleep)

        trainer.add_callback(Sleep())
    trainer.train(resume_from_checkpoint=resume)
    weights = full_weights(trainer, engine)
    logged = [[h[f"layer_loss/{l}"] for l in range(trainer.num_layers + 1)] for h in trainer.state.log_history
              if "layer_loss/0" in h]  # fmt: skip
    local = sum(local_numel(p, engine) for p in trainer.model.parameters())
    result = {"duals": trainer.dual_variables, "weights": weights, "seen": seen, "local_numel": local,
              "skipped": trainer.duals.skipped_nonfinite, "logged_layer_losses": torch.tensor(logged)}  # fmt: skip
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    trainer.end()  # destroy the process group, as the recipes do (`finish_run`)


def full_weights(trainer, engine: str) -> torch.Tensor:
    """Every parameter, whole, in the model's order (gathered from the shards under ZeRO-3 and FSDP2)."""
    params = list(trainer.model.parameters())
    if engine == "zero3":
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            return torch.cat([p.detach().flatten().clone() for p in params])
    if engine == "fsdp2":
        return torch.cat([p.detach().full_tensor().flatten() for p in params])
    return torch.cat([p.detach().flatten() for p in params])


def local_numel(param: torch.Tensor, engine: str) -> int:
    """How many of the parameter's elements this rank holds (its shard under ZeRO-3 and FSDP2)."""
    if engine == "zero3":
        return param.ds_tensor.numel()
    if engine == "fsdp2":
        return param.to_local().numel()
    return param.numel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("per_device_batch", type=int)
    parser.add_argument("--save_steps", type=int, default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--poison_rank", type=int, default=None)
    parser.add_argument("--poison_call", type=int, default=1)
    parser.add_argument("--max_steps", type=int, default=4)
    parser.add_argument("--layer_loss_interval", type=int, default=1)
    parser.add_argument("--step_sleep", type=float, default=0.0)
    parser.add_argument("--resilience_coef", default="none")
    parser.add_argument("--engine", default="ddp")
    cli = parser.parse_args()
    main(cli.out_dir, cli.per_device_batch, cli.save_steps, cli.resume, cli.poison_rank, cli.poison_call,
         cli.max_steps, cli.layer_loss_interval, cli.step_sleep, cli.resilience_coef, cli.engine)  # fmt: skip
    exit_without_teardown()  # the DDP / FSDP / ZeRO wrapper still holds the process group
