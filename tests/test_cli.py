"""The `mambalite` command line, run as a subprocess like a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mambalite

from helpers import make_hf_model, save_checkpoint


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "mambalite", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, bpe_tokenizer):
    d = tmp_path_factory.mktemp("cli")
    save_checkpoint(make_hf_model(seed=41, vocab_size=320, hidden_size=32,
                                  tie_word_embeddings=False), d / "ckpt", bpe_tokenizer)
    r = run("export", str(d / "ckpt"), "-o", str(d / "m.gguf"), "--type", "f16", "-q")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    return d / "m.gguf"


def test_generate_matches_api(gguf_file):
    r = run("generate", "-m", str(gguf_file), "The capital of France is", "-n", "24",
            "--temperature", "0")
    assert r.returncode == 0, r.stderr
    expected = mambalite.load(gguf_file).generate("The capital of France is", max_new_tokens=24,
                                                  temperature=0)
    assert r.stdout == expected + "\n"


def test_generate_reads_stdin_and_honours_options(gguf_file):
    args = ["generate", "-m", str(gguf_file), "-n", "30", "--seed", "7", "--top-k", "5",
            "--top-p", "0.9", "--min-p", "0.01", "--repetition-penalty", "1.2",
            "--temperature", "0.7", "--threads", "1"]
    a = run(*args, stdin="Once upon a time")
    b = run(*args, "Once upon a time")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    expected = mambalite.load(gguf_file).generate(
        "Once upon a time", max_new_tokens=30, seed=7, top_k=5, top_p=0.9, min_p=0.01,
        repetition_penalty=1.2, temperature=0.7)
    assert a.stdout == expected + "\n"


def test_info(gguf_file):
    r = run("info", str(gguf_file), "--tensors")
    assert r.returncode == 0, r.stderr
    for text in ("architecture:  mamba", "layers:        2", "d_state: 16", "vocab:         320",
                 "untied", "F16 x", "F32 x", "tokenizer:     huggingface (gpt2), 300 tokens",
                 "blk.1.ssm_out.weight", "state size:"):
        assert text in r.stdout


@pytest.mark.parametrize("args,code,message", [
    (["generate", "-m", "missing.gguf", "hi"], 1, "does not exist"),
    (["generate", "-m", "{model}", "hi", "--top-p", "2"], 1, "top_p must be in (0, 1]"),
    (["generate", "-m", "{model}", "hi", "-n", "-3"], 1, "max_new_tokens"),
    (["generate", "-m", "{model}", "hi", "--threads", "0"], 2, "--threads"),
    (["generate", "-m", "{model}", "hi", "--bogus"], 2, "unrecognized arguments"),
    (["perplexity"], 2, "file"),
    (["info", "{self}"], 1, "not a GGUF file"),
    (["export", "/nonexistent", "-o", "x.gguf"], 1, "does not exist"),
    (["export", "x", "-o", "y.gguf", "--type", "q9"], 2, "invalid choice"),
    ([], 2, "required"),
])
def test_errors(gguf_file, args, code, message):
    args = [a.replace("{model}", str(gguf_file)).replace("{self}", __file__) for a in args]
    r = run(*args)
    assert r.returncode == code
    assert message in r.stderr
    if code == 1:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mambalite: error: ")
        assert "Traceback" not in r.stderr


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "generate" in r.stdout and "export" in r.stdout
    r = run("generate", "--help")
    assert r.returncode == 0 and "--repetition-penalty" in r.stdout


def test_bench_reports_speed_and_roofline(gguf_file):
    r = run("bench", "-m", str(gguf_file), "--threads", "1", "--prefill", "16")
    assert r.returncode == 0, r.stderr
    assert "tokens/s" in r.stdout and "ms/token" in r.stdout
    assert "GB/s this machine streams" in r.stdout, r.stdout


def test_bench_result_fields(gguf_file):
    from mambalite.bench import bench

    res = bench(gguf_file, threads=1, prefill_tokens=8, decode_tokens=4, repeats=1)
    model = mambalite.load(gguf_file, threads=1)
    weights = sum(t["nbytes"] for t in model.tensors if t["name"] != "token_embd.weight")
    assert res.weight_bytes_per_token == weights  # untied head: one embedding row per token
    assert res.state_bytes == model.new_state().nbytes
    # Any machine streams memory at more than 100 MB/s, and a model this small decodes from the
    # caches, so the fraction is positive but says nothing about DRAM here.
    assert res.read_bytes_per_s > 1e8
    assert res.roofline_fraction == pytest.approx(res.decode_gb_per_s * 1e9 / res.read_bytes_per_s)


def test_read_bandwidth_rejects_tiny_buffers(gguf_file):
    model = mambalite.load(gguf_file, threads=1)
    with pytest.raises(ValueError, match="at least 4096 bytes"):
        model._core.read_bandwidth(100)
    assert model._core.read_bandwidth(1 << 20, 3) > 1e8
