"""mambalite: fast, constant-memory inference for Mamba language models from GGUF files."""

from .chat import ChatSession
from .export import export
from .model import Config, Model, Perplexity, State, cuda_available, default_model_path, load
from .quantize import quantize
from .tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = ["ChatSession", "Config", "Model", "Perplexity", "State", "Tokenizer", "cuda_available",
           "default_model_path", "export", "load", "quantize", "__version__"]
