"""Model configurations built from scratch: small Llamas for offline recipes and tests."""

from .tiny import tiny_llama_config

__all__ = ["tiny_llama_config"]
