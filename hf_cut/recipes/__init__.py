"""The training recipes, shipped in the package so that an installed hf-cut trains without the repository.

======================  =========================  ==============================================================
command                 the repository's script    what it trains
======================  =========================  ==============================================================
``hf-cut sft``          ``recipes/llama_sft.py``   a causal LM (SFT), :mod:`hf_cut.recipes.sft`
``hf-cut classify``     ``recipes/roberta_cls.py`` a sequence classifier or regressor, :mod:`hf_cut.recipes.classify`
``hf-cut denoise``      ``recipes/unrolled_denoise.py``  the unrolled video denoiser, :mod:`hf_cut.recipes.denoise`
======================  =========================  ==============================================================

Each command takes the recipe's flags (TRL's parser: ``--config X.yaml``, any field as a flag) and launches the
recipe through ``accelerate launch``, as ``trl sft`` does; ``--accelerate_config NAME`` picks one of the
configurations shipped in ``hf_cut/accelerate_configs`` (``ddp``, ``zero2``, ``zero3``, ``zero3_offload``,
``fsdp2``) or a YAML file, and ``accelerate launch``'s own flags (``--num_processes 2``) pass through. Without
``--config`` each recipe reads its built-in default (``llama_sft.yaml``, ``roberta_cls.yaml``,
``unrolled_denoise.yaml`` next to its module, the same files as ``recipes/*.yaml``). The scripts of ``recipes/`` are
thin files over these modules.
"""
