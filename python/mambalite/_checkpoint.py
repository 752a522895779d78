"""Reading PyTorch checkpoints (safetensors or .bin, sharded or not) one tensor at a time.

Tensors are memory-mapped and materialised only when asked for, so exporting a model never needs
the whole checkpoint in RAM.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # numpy has no bfloat16: kept as raw bits, widened in _to_float32
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32 exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _SafetensorsFile:
    """Lazy, memory-mapped view of one .safetensors file.

    The ``safetensors`` package's numpy front end cannot return bfloat16 tensors (numpy has no
    such dtype), and its torch front end would make torch a dependency of every export; the
    format is a JSON header followed by raw little-endian data, so we map it directly.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{path} is not a safetensors file (it is {size} bytes long)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise ValueError(f"{path} is not a valid safetensors file (header length {n})")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{path} is not a valid safetensors file: {e}") from None
        header.pop("__metadata__", None)
        self._base = 8 + n
        self._entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            if dtype not in _SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
            if not 0 <= begin <= end <= size - self._base:
                raise ValueError(f"{path} is truncated: tensor {name!r} lies beyond its end")
            self._entries[name] = (dtype, shape, begin, end)
        self._mmap: np.ndarray | None = None

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> str:
        return self._entries[name][0]

    def load(self, name: str) -> np.ndarray:
        dtype, shape, begin, end = self._entries[name]
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = self._mmap[self._base + begin : self._base + end]
        arr = raw.view(_SAFETENSORS_DTYPES[dtype]).reshape(shape)
        return bf16_bits_to_float32(arr) if dtype == "BF16" else arr


class _TorchFile:
    """A PyTorch .bin checkpoint, loaded with weights_only=True and memory-mapped."""

    def __init__(self, path: Path) -> None:
        try:
            import torch
        except ImportError:
            raise RuntimeError(
                f"{path} is a PyTorch .bin checkpoint; reading it needs torch "
                "(pip install torch), or convert it to safetensors first"
            ) from None
        self.path = path
        try:
            self._sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            self._sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle errors, foreign files
            raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {e}") from None
        if isinstance(self._sd, dict) and "state_dict" in self._sd:
            self._sd = self._sd["state_dict"]
        if not isinstance(self._sd, dict):
            raise ValueError(f"{path} does not hold a state dict")

    def names(self) -> list[str]:
        return list(self._sd)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._sd[name].shape)

    def dtype(self, name: str) -> str:
        return str(self._sd[name].dtype).replace("torch.", "")

    def load(self, name: str) -> np.ndarray:
        import torch

        t = self._sd[name]
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()


class Checkpoint:
    """All tensors of a checkpoint directory, by name, plus its config (config.json, or
    params.json for mistral's layout)."""

    def __init__(self, directory: str | Path) -> None:
        d = Path(directory)
        if not d.exists():
            raise FileNotFoundError(f"checkpoint directory {d} does not exist")
        if not d.is_dir():
            raise ValueError(f"{d} is not a directory: give the folder that holds config.json")
        self.dir = d
        # transformers and mamba_ssm write config.json; mistral's releases params.json.
        self.config_name = "params.json" if not (d / "config.json").is_file() and (
            d / "params.json").is_file() else "config.json"
        self.config = self._read_json(self.config_name, required=True)
        self._files: dict[str, Any] = {}
        self._where: dict[str, str] = {}
        for f in self._weight_files():
            reader = _SafetensorsFile(f) if f.suffix == ".safetensors" else _TorchFile(f)
            self._files[f.name] = reader
            for n in reader.names():
                self._where[n] = f.name

    def _read_json(self, name: str, required: bool = False) -> dict[str, Any]:
        p = self.dir / name
        if not p.is_file():
            if required:
                raise FileNotFoundError(f"{self.dir} has no {name}: is it a model checkpoint?")
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p} is not valid JSON: {e}") from None

    def read_json(self, name: str) -> dict[str, Any]:
        """An optional JSON file of the checkpoint ({} when absent)."""
        return self._read_json(name)

    def _weight_files(self) -> list[Path]:
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            index = self._read_json(index_name)
            if index:
                shards = sorted(set(index.get("weight_map", {}).values()))
                missing = [s for s in shards if not (self.dir / s).is_file()]
                if missing:
                    raise FileNotFoundError(f"{self.dir}: shards listed in {index_name} are "
                                            f"missing: {', '.join(missing)}")
                return [self.dir / s for s in shards]
        for pattern in ("model.safetensors", "*.safetensors", "pytorch_model.bin", "*.bin"):
            found = sorted(self.dir.glob(pattern))
            if found:
                return found
        raise FileNotFoundError(
            f"{self.dir} has no weights (expected model.safetensors, pytorch_model.bin or "
            "sharded files with an index json)"
        )

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return self._files[self._where[name]].shape(name)

    def dtype(self, name: str) -> str:
        return self._files[self._where[name]].dtype(name)

    def load(self, name: str) -> np.ndarray:
        """The tensor as a numpy array (bfloat16 widened to float32)."""
        return self._files[self._where[name]].load(name)
