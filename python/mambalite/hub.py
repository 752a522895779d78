"""Models by name from the Hugging Face Hub: `hf://owner/repo` or `hf://owner/repo:file.gguf`,
through huggingface_hub (its cache, progress bars, tokens and offline mode, HF_HUB_OFFLINE=1).

A repository with GGUF files gives one of them (the named one, else the first of Q8_0, Q4_0,
F16, BF16, F32 that it has, else the first by name). A checkpoint repository (config.json and
weights) is exported to GGUF once, into mambalite's cache (MAMBALITE_CACHE, default
~/.cache/mambalite), keyed by the snapshot's commit so that an updated repository is exported
again.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

PREFIX = "hf://"
_PREFERRED = ("q8_0", "q4_0", "f16", "bf16", "f32")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")
_CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.bin", "*.model", "*.jinja", "*.txt",
                     "*.tiktoken"]


def is_hub_name(path: object) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError('loading hf:// names needs huggingface_hub: pip install '
                          '"mambalite[hub]"') from None
    return huggingface_hub


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_snapshot(repo: str, patterns: list[str] | None = None) -> Path:
    hub = _hub()
    try:
        return Path(hub.snapshot_download(repo, local_files_only=True,
                                          allow_patterns=patterns))
    except hub.errors.LocalEntryNotFoundError:
        why = ("offline mode is on (HF_HUB_OFFLINE=1)" if _offline()
               else "the Hub could not be reached")
        raise FileNotFoundError(f"{repo} is not in the Hugging Face cache and {why}; download it "
                                f"once with a connection (hf download {repo})") from None


def _repo_files(repo: str) -> list[str]:
    hub = _hub()
    if not _offline():
        try:
            return list(hub.HfApi().list_repo_files(repo))
        except hub.errors.RepositoryNotFoundError:
            raise FileNotFoundError(f"no repository {repo} on the Hugging Face Hub (or it is "
                                    "private: log in with `hf auth login`)") from None
        except (OSError, hub.errors.HfHubHTTPError):
            pass  # no connection: what the cache has
    snap = _cached_snapshot(repo)
    return sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())


def _choose_gguf(repo: str, files: list[str]) -> str | None:
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf") and not _SPLIT.search(f))
    if not ggufs:
        if any(_SPLIT.search(f) for f in files):
            raise ValueError(f"{repo} has only split GGUF files (-0000N-of-0000M.gguf), which "
                             "mambalite does not read; merge them with llama.cpp's "
                             "llama-gguf-split --merge")
        return None
    for kind in _PREFERRED:
        for f in ggufs:
            if re.search(rf"[-_.]{kind}[-_.]", f.lower().replace(".gguf", ".")):
                return f
    return ggufs[0]


def _cache_root() -> Path:
    base = os.environ.get("MAMBALITE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mambalite"


def resolve(name: str, *, export_type: str = "f16") -> Path:
    """The local GGUF file for `hf://owner/repo[:file.gguf]`, downloaded or exported as needed."""
    spec = name[len(PREFIX):]
    repo, _, filename = spec.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{name!r} is not a Hub name: expected hf://owner/repo or "
                         "hf://owner/repo:file.gguf")
    hub = _hub()
    try:
        if filename:
            return Path(hub.hf_hub_download(repo, filename))
        files = _repo_files(repo)
        gguf = _choose_gguf(repo, files)
        if gguf is not None:
            return Path(hub.hf_hub_download(repo, gguf))
        if "config.json" not in files and "params.json" not in files:
            raise ValueError(f"{repo} has neither a GGUF file nor a checkpoint (config.json); "
                             "name a file with hf://owner/repo:file.gguf")
        snap = Path(hub.snapshot_download(repo, allow_patterns=_CHECKPOINT_FILES))
    except hub.errors.LocalEntryNotFoundError:
        why = ("offline mode is on (HF_HUB_OFFLINE=1)" if _offline()
               else "the Hub could not be reached")
        raise FileNotFoundError(f"{repo}{':' + filename if filename else ''} is not in the "
                                f"Hugging Face cache and {why}; download it once with a "
                                "connection") from None
    except hub.errors.EntryNotFoundError:
        raise FileNotFoundError(f"{repo} has no file {filename!r}") from None
    except hub.errors.RepositoryNotFoundError:
        raise FileNotFoundError(f"no repository {repo} on the Hugging Face Hub") from None
    out = _cache_root() / "hub" / repo.replace("/", "--") / f"{snap.name}-{export_type}.gguf"
    if not out.is_file():
        from .export import export

        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"mambalite: exporting {repo} to {out} (once)", file=sys.stderr)
        tmp = out.with_suffix(".partial")
        export(snap, tmp, export_type, progress=sys.stderr is not None and sys.stderr.isatty())
        os.replace(tmp, out)
    return out
