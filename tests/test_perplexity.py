"""`Model.perplexity` and `mambalite perplexity` against PyTorch's cross-entropy (random models).

The reference is transformers' model on the same ids: cross-entropy of logits[t] against
ids[t + 1], averaged. Both sides compute in fp32 (we accumulate log-sum-exp in float64), so the
bound is 1e-5 relative on the cross-entropy, far below the 0.1% the default-model test asks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mambalite

from helpers import export, make_hf_mamba2, make_hf_model, save_checkpoint
from test_cli import run


def torch_nll(model, ids) -> tuple[float, int]:
    """Summed cross-entropy (nats) of ids[1:] given the prefixes, and the count."""
    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(ids))[None]).logits[0].double()
    t = torch.as_tensor(np.asarray(ids[1:]))
    return float(torch.nn.functional.cross_entropy(logits[:-1], t, reduction="sum")), len(t)


@pytest.fixture(scope="module", params=["mamba", "mamba2"])
def pair(request, tmp_path_factory, bpe_tokenizer):
    if request.param == "mamba":
        hf = make_hf_model(seed=5, vocab_size=320)
    else:
        hf = make_hf_mamba2(seed=5, vocab_size=320)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("ppl") / "ckpt", bpe_tokenizer)
    return hf, mambalite.load(export(d, "f32"), threads=2)


def test_whole_text_matches_pytorch(pair):
    hf, model = pair
    ids = np.random.default_rng(0).integers(0, 300, size=600)  # crosses the 256-token blocks
    nll, n = torch_nll(hf, ids)
    r = model.perplexity(ids)
    assert r.n_tokens == n == 599 and r.window is None and r.n_bytes == 0
    assert r.cross_entropy == pytest.approx(nll / n, rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert float(r) == r.perplexity and r.bits_per_byte is None


def test_windows_match_pytorch_per_window(pair):
    hf, model = pair
    ids = np.random.default_rng(1).integers(0, 300, size=250)
    # No BOS is added to ids: window k > 0 starts from the last token of window k - 1.
    total = 0.0
    for s in range(0, 250, 100):
        chunk = ids[max(0, s - 1):s + 100]
        total += torch_nll(hf, chunk)[0]
    r = model.perplexity(ids, window=100)
    assert r.n_tokens == 249 and r.window == 100
    assert r.cross_entropy == pytest.approx(total / 249, rel=1e-5)
    # One big window is the whole text.
    assert model.perplexity(ids, window=1000).cross_entropy == pytest.approx(
        model.perplexity(ids).cross_entropy, rel=1e-6)


def test_text_is_tokenized_like_generation(pair):
    hf, model = pair
    text = "def f(x):\n    return x * 2  # doubled\n" * 5
    ids = model.tokenizer.encode(text)
    nll, n = torch_nll(hf, ids)
    r = model.perplexity(text)
    assert r.n_tokens == n and r.n_bytes == len(text.encode())
    assert r.cross_entropy == pytest.approx(nll / n, rel=1e-5)
    assert r.bits_per_byte == pytest.approx(nll / (math.log(2) * len(text.encode())), rel=1e-5)
    assert "perplexity" in str(r) and "bits/byte" in str(r)


def test_progress_bar_and_state_isolation(pair, capsys):
    _, model = pair
    ids = list(range(1, 300))
    a = model.perplexity(ids, progress=True)
    assert "perplexity" in capsys.readouterr().err  # the tqdm bar went to stderr
    assert model.perplexity(ids, progress=False).cross_entropy == a.cross_entropy


@pytest.mark.parametrize("args,err,match", [
    (([5],), ValueError, "at least two"),
    (([1, 2, 3],), None, None),
    (([1, 2, 999],), ValueError, "out of range"),
    (([[1, 2], [3, 4]],), ValueError, "1-D"),
    (([1.5, 2],), TypeError, "integers"),
    (("",), ValueError, "empty"),
])
def test_bad_inputs(pair, args, err, match):
    _, model = pair
    if err is None:
        assert model.perplexity(*args).n_tokens == len(args[0]) - 1
    else:
        with pytest.raises(err, match=match):
            model.perplexity(*args)


@pytest.mark.parametrize("window", [1, 0, -4, 2.5, True])
def test_bad_window(pair, window):
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        pair[1].perplexity([1, 2, 3], window=window)


def test_cli(pair, tmp_path):
    _, model = pair
    text = "import os\nprint(os.getcwd())\n" * 20
    f = tmp_path / "t.py"
    f.write_text(text)
    expected = model.perplexity(text)
    r = run("perplexity", "-m", str(model.path), str(f), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(expected)
    r = run("perplexity", "-m", str(model.path), "-", "--window", "16", stdin=text)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(model.perplexity(text, window=16))
    for args, message in ((["missing.txt"], "does not exist"),
                          ([str(tmp_path / "empty.txt")], "is empty"),
                          ([str(tmp_path / "bin.txt")], "is not UTF-8")):
        (tmp_path / "empty.txt").write_text("")
        (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
        r = run("perplexity", "-m", str(model.path), *args)
        assert r.returncode == 1 and message in r.stderr, r.stderr
