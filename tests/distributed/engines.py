"""Test-only setup that makes accelerate run DeepSpeed ZeRO-3 or FSDP2 on CPU processes over gloo.

accelerate enables both engines only on accelerators; on CPU it falls back to plain data parallel. Creating the
process state first (gloo) and telling the Trainer to use it (``use_configured_state``) lets the engines run here, so
the sharded code paths of the readout and the trainer execute in the test suite. The library needs none of this: on
GPUs ``accelerate launch --config_file …`` does it.
"""

import os

ENGINES = ("ddp", "zero3", "fsdp2")

# stage 3 with every parameter partitioned (no small parameter kept whole on every rank): each rank holds half of
# `lm_head`, so the readout's direct reads of the head are exercised
ZERO3 = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "zero_allow_untested_optimizer": True,
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
}


def engine_options(engine: str) -> dict:
    """Create the gloo process state for ``engine`` and return the training-argument overrides that use it.

    Call before the training arguments are built (they would create a CPU state of their own)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ddp":
        return {}
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    if engine == "zero3":
        import deepspeed.ops

        # DeepSpeed's CPU accelerator compiles a shared-memory all-reduce on first use (~1 min, needs g++ and ninja);
        # without it, its collectives go through torch.distributed (gloo), which is what this test is about
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        PartialState(backend="gloo")
        return dict(use_cpu=False, deepspeed=ZERO3, accelerator_config={"use_configured_state": True})
    state = PartialState(backend="gloo")
    # accelerate attaches the FSDP plugin only to a multi-accelerator state; the device stays the CPU
    state.distributed_type = DistributedType.MULTI_GPU
    return dict(use_cpu=False, fsdp=True, fsdp_config={"version": 2},
                accelerator_config={"use_configured_state": True})  # fmt: skip
