"""Models of hf-cut: the paper's unrolled transformer, small configurations for offline recipes and tests, and the real
pretrained models that install offline from the package registry (all-MiniLM-L6-v2, SmolLM2-135M-Instruct).

Importing this package registers ``UnrolledTransformerConfig`` / ``UnrolledTransformerModel`` with transformers'
``AutoConfig`` and ``AutoModel``.
"""

from .minilm import packaged_minilm_path
from .smollm2 import packaged_smollm2_path
from .tiny import tiny_llama_config
from .unrolled import UnrolledTransformerConfig, UnrolledTransformerModel

__all__ = [
    "UnrolledTransformerConfig",
    "UnrolledTransformerModel",
    "packaged_minilm_path",
    "packaged_smollm2_path",
    "tiny_llama_config",
]
