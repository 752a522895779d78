"""Measure what each weight type costs the default model, and write the test's golden data.

    python tools/default_model_quality.py build/default-model

Reads the run directory of tools/train_default_model.py (the fp32 checkpoint in
``mambalite-pystdlib/`` and ``heldout_files.txt``), exports f32, f16, bf16, q8_0 and q4_0 GGUF files
with mambalite's exporter, and over the held-out split (each file from a fresh state, BOS
first) reports:

- held-out perplexity by mambalite for each type;
- the same number from the PyTorch model (transformers, fp32 arithmetic) holding that file's
  weights (dequantized with ``gguf.quants``): the weights' rounding only, where our engine also
  quantizes activations to int8 blocks for the Q8_0/Q4_0 products;
- the share of held-out positions whose greedy (argmax) next token equals f32's.

It writes ``quality.json`` and ``quality.md`` into the run directory and, with ``--golden``,
``tests/data/default_model.json`` (the held-out sample's fp32 cross-entropy by PyTorch and a
greedy continuation of the README's prompt).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
GOLDEN_PROMPT = "def fibonacci(n):"
GOLDEN_TOKENS = 48
HELDOUT_SAMPLE = ("copy.py", "base64.py")  # in tests/data/heldout, held out by the split


def torch_weights(hf, path: Path):
    """A copy of the PyTorch model holding the weights of the GGUF file `path`, dequantized."""
    import copy

    import gguf
    import torch

    m = copy.deepcopy(hf)
    params = dict(m.named_parameters())
    mixer = {"ssm_in": "in_proj", "ssm_out": "out_proj"}
    with torch.no_grad():
        for t in gguf.GGUFReader(path).tensors:
            if t.tensor_type == gguf.GGMLQuantizationType.F32:
                continue  # stored exactly
            parts = t.name.split(".")
            if t.name == "token_embd.weight":
                name = "backbone.embeddings.weight"
            elif t.name == "output.weight":
                name = "lm_head.weight"
            else:
                name = f"backbone.layers.{parts[1]}.mixer.{mixer[parts[2]]}.weight"
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            params[name].copy_(torch.from_numpy(w.reshape(params[name].shape)))
    return m


def torch_eval(model, docs: list[list[int]]) -> tuple[float, int, list[np.ndarray]]:
    import torch

    nll, n, argmax = 0.0, 0, []
    with torch.no_grad():
        for ids in docs:
            logits = model(torch.tensor(ids)[None]).logits[0].double()
            nll += float(torch.nn.functional.cross_entropy(
                logits[:-1], torch.tensor(ids[1:]), reduction="sum"))
            n += len(ids) - 1
            argmax.append(logits[:-1].argmax(-1).numpy())
    return nll, n, argmax


def engine_eval(model, docs: list[list[int]]) -> tuple[float, int, list[np.ndarray]]:
    nll, n, argmax = 0.0, 0, []
    for ids in docs:
        ids = np.asarray(ids, dtype=np.int32)
        state = model.new_state()
        am = []
        for b in range(0, len(ids) - 1, 1024):
            x = model.forward_state(state, ids[b:min(b + 1024, len(ids) - 1)]).astype(np.float64)
            t = ids[b + 1:b + 1 + len(x)]
            m = x.max(axis=1)
            lse = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
            nll += float((lse - x[np.arange(len(t)), t]).sum())
            am.append(x.argmax(axis=1))
        n += len(ids) - 1
        argmax.append(np.concatenate(am))
    return nll, n, argmax


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="output directory of train_default_model.py")
    ap.add_argument("--golden", action="store_true", help="write tests/data/default_model.json")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--golden-only", action="store_true", help="skip the quality table")
    ap.add_argument("--max-files", type=int, default=None, help="only the first N held-out files")
    args = ap.parse_args(argv)

    import torch
    from transformers import Mamba2ForCausalLM

    import mambalite

    run: Path = args.run
    ckpt = run / "mambalite-pystdlib"
    hf = Mamba2ForCausalLM.from_pretrained(ckpt).float().eval()
    root = Path(sysconfig.get_paths()["stdlib"])
    held = (run / "heldout_files.txt").read_text().split()[:args.max_files]
    models = {}
    for t in TYPES:
        path = run / f"model-{t}.gguf"
        if not path.exists():
            mambalite.export(ckpt, path, t, progress=False)
        models[t] = mambalite.load(path, threads=args.threads)
    tok = models["f32"].tokenizer
    docs = [tok.encode((root / r).read_text(encoding="utf-8", errors="replace")) for r in held]
    n_bytes = sum(len((root / r).read_bytes()) for r in held)

    rows, ref_argmax = [], None
    for t in [] if args.golden_only else TYPES:
        e_nll, n, e_argmax = engine_eval(models[t], docs)
        path = run / f"model-{t}.gguf"
        p_nll, _, _ = torch_eval(torch_weights(hf, path) if t != "f32" else hf, docs)
        if ref_argmax is None:
            ref_argmax = e_argmax
        agree = float(np.mean(np.concatenate(
            [a == b for a, b in zip(e_argmax, ref_argmax)])))
        rows.append({"type": t, "size_mb": round((run / f"model-{t}.gguf").stat().st_size / 1e6, 2),
                     "mambalite_ppl": math.exp(e_nll / n), "pytorch_ppl": math.exp(p_nll / n),
                     "mambalite_ce": e_nll / n, "bits_per_byte": e_nll / n_bytes / math.log(2),
                     "greedy_agreement_vs_f32": agree, "tokens": n})
        print(json.dumps(rows[-1]), flush=True)
    if args.golden_only:
        rows = json.loads((run / "quality.json").read_text())
    (run / "quality.json").write_text(json.dumps(rows, indent=1))
    f32 = rows[0]["mambalite_ppl"]
    md = ["| type | file | held-out perplexity (mambalite) | PyTorch, same weights | vs f32 | "
          "bits/byte | greedy = f32 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['type'].upper()} | {r['size_mb']:.1f} MB | {r['mambalite_ppl']:.4f} | "
                  f"{r['pytorch_ppl']:.4f} | {100 * (r['mambalite_ppl'] / f32 - 1):+.2f}% | "
                  f"{r['bits_per_byte']:.4f} | {100 * r['greedy_agreement_vs_f32']:.2f}% |")
    (run / "quality.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))

    if args.golden:
        sample = "".join((ROOT / "tests/data/heldout" / f"{f}.txt").read_text(encoding="utf-8")
                         for f in HELDOUT_SAMPLE)
        ids = tok.encode(sample)
        nll, n, _ = torch_eval(hf, [ids])
        q8 = models["q8_0"]
        gen_ids = list(q8.generate_tokens(GOLDEN_PROMPT, max_new_tokens=GOLDEN_TOKENS,
                                          temperature=0, token_healing=True))
        text = q8.generate(GOLDEN_PROMPT, max_new_tokens=GOLDEN_TOKENS, temperature=0)
        golden = {"heldout_sample": list(HELDOUT_SAMPLE),
                  "pytorch_fp32_cross_entropy": nll / n, "heldout_sample_tokens": n,
                  "golden": {"prompt": GOLDEN_PROMPT, "max_new_tokens": GOLDEN_TOKENS,
                             "ids": gen_ids, "text": text},
                  "provenance": "tools/default_model_quality.py --golden on the run of "
                  f"tools/train_default_model.py (torch {torch.__version__})"}
        (ROOT / "tests/data/default_model.json").write_text(json.dumps(golden, indent=1) + "\n")
        print(GOLDEN_PROMPT + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
