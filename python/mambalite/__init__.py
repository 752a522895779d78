"""mambalite: fast, constant-memory inference for Mamba language models from GGUF files."""

from .export import export
from .model import Config, Model, State, load
from .quantize import quantize
from .tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = ["Config", "Model", "State", "Tokenizer", "export", "load", "quantize", "__version__"]
