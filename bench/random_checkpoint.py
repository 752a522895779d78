"""Random transformers checkpoints of billion-parameter shapes without holding the model: the
tensor names and shapes come from the model built on the meta device, the values (the test
helpers' distributions: unit-variance linear outputs, norms near 1, A_log and D as Mamba's) are
drawn one tensor at a time and written as float16 safetensors shards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    r = rng.standard_normal(shape, dtype=np.float32)
    if name.endswith("A_log"):
        if len(shape) == 2:  # Mamba-1: log(1..N) per row
            return (np.log(np.arange(1, shape[1] + 1, dtype=np.float32))[None] + 0.1 * r)
        return np.log(np.arange(1, shape[0] + 1, dtype=np.float32)) + 0.1 * r
    if name.endswith(".D") or "norm" in name:
        return 1.0 + 0.1 * r
    if name.endswith("bias"):
        return 0.3 * r
    if "conv1d" in name:
        return 0.5 * r
    if "embed" in name:
        return r
    return r / math.sqrt(shape[-1])


def write_random_checkpoint(cls_name: str, cfg_name: str, config: dict, directory: Path,
                            seed: int = 0, shard_bytes: int = 2 << 30) -> Path:
    """directory/config.json and float16 model-*.safetensors shards with an index."""
    import torch
    import transformers
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    cfg = getattr(transformers, cfg_name)(**config)
    with torch.device("meta"):
        model = getattr(transformers, cls_name)(cfg)
    params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    if cfg.tie_word_embeddings:
        params = [(n, s) for n, s in params if n != "lm_head.weight"]
    rng = np.random.default_rng(seed)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, shape in params:
        a = _values(name, shape, rng).astype(np.float16)
        if size + a.nbytes > shard_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = a
        size += a.nbytes
    index = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / fname), metadata={"format": "pt"})
        index.update({n: fname for n in shard})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": index}))
    cfg.save_pretrained(directory)
    return directory
