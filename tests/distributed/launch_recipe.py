"""Run a recipe as its launcher would, on CPU ranks: ``launch_recipe.py ENGINE RECIPE [RECIPE ARGS…]``.

    torchrun --nproc_per_node 2 tests/distributed/launch_recipe.py zero3 recipes/llama_sft.py --config …

ENGINE is ``ddp``, ``zero3``, ``zero2``, ``zero3_offload`` or ``fsdp2``. On GPUs ``accelerate launch --config_file
accelerate_configs/<engine>.yaml`` sets the engine up; here the gloo process state is created first
(``tests/distributed/engines.py``) and the engine handed to the recipe as the training flags that name it
(``--deepspeed FILE``, ``--fsdp``), so the recipe's own ``main`` runs unchanged.
"""

import json
import os
import runpy
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.distributed import exit_without_teardown  # noqa: E402
from tests.distributed.engines import engine_options  # noqa: E402


def engine_flags(engine: str) -> list[str]:
    """The recipe flags that put it on ``engine`` (after the gloo state is created)."""
    options = engine_options(engine)
    if "deepspeed" in options:  # as accelerate_configs/zero3.yaml: `zero3_save_16bit_model: true`
        zero = options["deepspeed"]["zero_optimization"]
        options["deepspeed"] = {**options["deepspeed"],
                                "zero_optimization": {**zero, "stage3_gather_16bit_weights_on_model_save": True}}
    folder = tempfile.mkdtemp(prefix=f"engine-{engine}-")

    def as_file(name: str, value: dict) -> str:
        path = os.path.join(folder, f"{name}.json")
        with open(path, "w") as f:
            json.dump(value, f)
        return path

    flags = []
    for name, value in options.items():
        if name == "fsdp":
            flags += ["--fsdp", "full_shard"]
        elif isinstance(value, dict):
            flags += [f"--{name}", as_file(name, value)]
        else:
            flags += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


if __name__ == "__main__":
    engine, recipe, *recipe_args = sys.argv[1:]
    sys.argv = [recipe, *recipe_args, *engine_flags(engine)]
    runpy.run_path(recipe, run_name="__main__")
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    exit_without_teardown()
