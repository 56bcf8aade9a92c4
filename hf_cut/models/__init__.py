"""Models of hf-cut: the paper's unrolled transformer, and small configurations for offline recipes and tests.

Importing this package registers ``UnrolledTransformerConfig`` / ``UnrolledTransformerModel`` with transformers'
``AutoConfig`` and ``AutoModel``.
"""

from .tiny import tiny_llama_config
from .unrolled import UnrolledTransformerConfig, UnrolledTransformerModel

__all__ = ["UnrolledTransformerConfig", "UnrolledTransformerModel", "tiny_llama_config"]
