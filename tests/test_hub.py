"""Loading by name (`hf://owner/repo[:file.gguf]`) from a local Hugging Face cache laid out as
huggingface_hub lays it out (blobs, snapshots/<commit> links, refs/main), with HF_HUB_OFFLINE=1:
no network here. Run in a subprocess, since huggingface_hub reads its settings at import."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from helpers import export, make_hf_model, save_checkpoint  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _add_repo(cache: Path, repo: str, files: dict[str, Path], commit: str = COMMIT) -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    for name, src in files.items():
        data = src.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def _run(code: str, cache: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "MAMBALITE_CACHE": str(out)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, bpe_tokenizer, text_model):
    tmp = tmp_path_factory.mktemp("hub")
    cache = tmp / "hf-cache"
    q8 = tmp / "tiny-Q8_0.gguf"
    f32 = Path(text_model[1])
    shutil.copy(f32, q8)  # same bytes under a Q8_0 name: which file was chosen shows in the path
    _add_repo(cache, "someone/tiny-GGUF", {"tiny-F32.gguf": f32, "tiny-Q8_0.gguf": q8,
                                           "README.md": f32.parent / "config.json"})
    hf = make_hf_model(seed=44, vocab_size=320, hidden_size=32, num_hidden_layers=1)
    ckpt = save_checkpoint(hf, tmp / "ckpt", bpe_tokenizer)
    _add_repo(cache, "someone/tiny-hf", {p.name: p for p in ckpt.iterdir() if p.is_file()})
    return cache, tmp / "ml-cache", export(ckpt, "f16", name="direct-f16.gguf"), f32


def test_gguf_repo_loads_its_preferred_file(hub):
    cache, out, _, f32 = hub
    code = ("import mambalite, json\n"
            "m = mambalite.load('hf://someone/tiny-GGUF', threads=1)\n"
            "n = mambalite.load('hf://someone/tiny-GGUF:tiny-F32.gguf', threads=1)\n"
            "print(json.dumps([m.path.name, n.path.name,\n"
            "                  m.generate('The capital', temperature=0, max_new_tokens=8)]))\n")
    r = _run(code, cache, out)
    assert r.returncode == 0, r.stderr
    name, named, text = json.loads(r.stdout)
    import mambalite

    want = mambalite.load(f32, threads=1).generate("The capital", temperature=0,
                                                   max_new_tokens=8)
    assert (name, named, text) == ("tiny-Q8_0.gguf", "tiny-F32.gguf", want)


def test_checkpoint_repo_is_exported_once(hub):
    cache, out, direct, _ = hub
    code = ("import mambalite, json\n"
            "m = mambalite.load('hf://someone/tiny-hf', threads=1)\n"
            "print(json.dumps([str(m.path), m.forward([1, 2, 3]).tolist()]))\n")
    r1 = _run(code, cache, out)
    assert r1.returncode == 0, r1.stderr
    assert "exporting someone/tiny-hf" in r1.stderr
    path, logits = json.loads(r1.stdout)
    assert Path(path).parent == out / "hub" / "someone--tiny-hf"
    assert COMMIT in Path(path).name
    import numpy as np

    import mambalite

    np.testing.assert_array_equal(np.asarray(logits, dtype=np.float32),
                                  mambalite.load(direct, threads=1).forward([1, 2, 3]))
    r2 = _run(code, cache, out)
    assert r2.returncode == 0 and "exporting" not in r2.stderr  # the cached export is used
    assert json.loads(r2.stdout)[0] == path


def test_hub_errors_are_clear(hub):
    cache, out, _, _ = hub
    cases = {
        "hf://nobody/missing": "not in the Hugging Face cache and offline mode is on",
        "hf://someone/tiny-GGUF:nope.gguf": "nope.gguf is not in the Hugging Face cache",
        "hf://just-a-name": "expected hf://owner/repo",
    }
    for name, message in cases.items():
        r = _run(f"import mambalite\nmambalite.load({name!r})\n", cache, out)
        assert r.returncode == 1 and message in r.stderr, (name, r.stderr[-500:])
    r = subprocess.run([sys.executable, "-m", "mambalite", "generate", "-m", "hf://nobody/x",
                        "hi"], env={**os.environ, "HF_HUB_OFFLINE": "1",
                                    "HF_HUB_CACHE": str(cache)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "mambalite: error:" in r.stderr and "offline" in r.stderr
