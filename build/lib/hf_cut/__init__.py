"""hf-cut: fine-tune Hugging Face transformers under layerwise descent constraints (arXiv 2601.17257)."""

from .config import ConstrainedSFTConfig, ConstrainedTrainingArguments, ConstraintArguments
from .duals import DualVariables
from .noise import EmbeddingNoise
from .trainer import ConstrainedSFTTrainer, ConstrainedTrainer

__all__ = [
    "ConstrainedSFTConfig",
    "ConstrainedSFTTrainer",
    "ConstrainedTrainer",
    "ConstrainedTrainingArguments",
    "ConstraintArguments",
    "DualVariables",
    "EmbeddingNoise",
]
__version__ = "0.1.0"
