"""Train mambalite's default model: a small Mamba-2 on the Python standard library's source.

Reproducible from a seed on any machine with Python, PyTorch and transformers, offline:

    python tools/train_default_model.py --out build/default-model   # about 80 min on 2 cores

Steps (each writes into --out):
1. Corpus: every ``.py`` file of the running interpreter's standard library, without its tests
   (``test``, ``tests``, ``idle_test``, ``lib2to3``, ``turtledemo``, ``ensurepip``; PSF licence).
   A file is held out for evaluation when the SHA-1 of its relative path is 0 modulo 20.
2. Tokenizer: SentencePiece BPE, 4096 pieces, byte fallback (any text encodes), identity
   normalisation, whitespace kept; trained on 20-line chunks of the training files so pieces
   may end in a newline (about 5% fewer tokens than line-by-line training).
3. Model: transformers ``Mamba2ForCausalLM`` (the reference PyTorch implementation, chunked SSD
   form), AdamW with warm-up and cosine decay on random 256-token windows of the concatenated
   training files (each file starts with BOS); held-out loss every ``--eval-every`` steps into
   ``curve.json``.
4. Export through mambalite's own exporter: ``model-f32.gguf`` and ``model-q8_0.gguf`` (the
   shipped file), plus the checkpoint directory ``mambalite-pystdlib/`` (safetensors, config,
   tokenizer; its name becomes the GGUF general.name).

The recipe was sized for the 2-core CPU budget of about two hours: training is compute bound at
about 45 GFLOP/s, so the parameter count and the number of tokens trade against each other
(6 x params x tokens FLOPs); see docs/default-model.md for the choice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import sysconfig
import time
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
             "lib2to3", "turtledemo", "ensurepip"}


def stdlib_files(root: str | None = None) -> list[tuple[str, str]]:
    """(relative path, text) of every standard-library source file, sorted, tests excluded."""
    root = root or sysconfig.get_paths()["stdlib"]
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("config-"))
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(d, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    files.append((os.path.relpath(path, root).replace(os.sep, "/"), f.read()))
    return files


def is_held_out(rel: str) -> bool:
    """The split is by file: 1 in 20 files, chosen by a hash of the path (stable everywhere)."""
    return int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 20 == 0


def train_tokenizer(train: list[tuple[str, str]], prefix: Path, vocab_size: int, seed: int):
    import sentencepiece as spm

    chunks = []
    for _, text in train:
        lines = text.split("\n")
        chunks.extend("\n".join(lines[i:i + 20]) + "\n" for i in range(0, len(lines), 20))
    random.Random(seed).shuffle(chunks)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(chunks), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True,
        character_coverage=0.9999, max_sentence_length=8192, shuffle_input_sentence=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    # The trainer records the output path; drop it so that the file (and the GGUF that embeds
    # it) depends on nothing but the corpus and the seed.
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(f"{prefix}.model")
    proto = pb.ModelProto()
    proto.ParseFromString(path.read_bytes())
    proto.trainer_spec.model_prefix = "tokenizer"
    path.write_bytes(proto.SerializeToString())
    return spm.SentencePieceProcessor(model_file=str(path))


def encode_files(sp, files: list[tuple[str, str]]):
    import numpy as np

    ids: list[int] = []
    for _, text in files:
        ids.append(sp.bos_id())
        ids.extend(sp.encode(text))
    return np.asarray(ids, dtype=np.int64)


def model_config(args, vocab_size: int):
    from transformers import Mamba2Config

    return Mamba2Config(
        vocab_size=vocab_size, hidden_size=args.d_model, num_hidden_layers=args.n_layer,
        state_size=args.d_state, expand=2, head_dim=args.head_dim,
        num_heads=2 * args.d_model // args.head_dim, n_groups=1, conv_kernel=4,
        chunk_size=64, tie_word_embeddings=True, use_cache=False, rms_norm=True,
        norm_before_gate=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def held_out_loss(model, windows) -> float:
    """Mean next-token cross-entropy (nats) over fixed held-out windows."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), 16):
            x = windows[i:i + 16]
            logits = model(input_ids=x[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += x[:, 1:].numel()
    model.train()
    return total / count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/default-model"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256, help="training window (tokens)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-windows", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import Mamba2ForCausalLM

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)

    files = stdlib_files()
    train = [f for f in files if not is_held_out(f[0])]
    held = [f for f in files if is_held_out(f[0])]
    print(f"corpus: Python {sys.version.split()[0]} stdlib, {len(train)} training files "
          f"({sum(len(t) for _, t in train) / 1e6:.2f} MB), {len(held)} held out "
          f"({sum(len(t) for _, t in held) / 1e6:.2f} MB)", flush=True)
    (out / "heldout_files.txt").write_text("".join(f"{r}\n" for r, _ in held))

    hf_dir = out / "mambalite-pystdlib"  # the directory name becomes general.name
    hf_dir.mkdir(exist_ok=True)
    sp = train_tokenizer(train, hf_dir / "tokenizer", args.vocab, args.seed)
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
         "unk_token": "<unk>"}, indent=2))
    train_ids = encode_files(sp, train)
    held_ids = encode_files(sp, held)
    chars = sum(len(t) for _, t in train)
    print(f"tokenizer: {sp.get_piece_size()} pieces, {len(train_ids)} training tokens "
          f"({chars / len(train_ids):.2f} chars/token), {len(held_ids)} held-out tokens",
          flush=True)

    T = args.seq
    n_eval = min(args.eval_windows, (len(held_ids) - 1) // (T + 1))
    stride = (len(held_ids) - (T + 1)) // max(1, n_eval - 1)
    eval_windows = torch.from_numpy(np.stack(
        [held_ids[i * stride:i * stride + T + 1] for i in range(n_eval)])).to(args.device)

    model = Mamba2ForCausalLM(model_config(args, sp.get_piece_size())).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    rng = np.random.default_rng(args.seed)
    curve = []
    t0 = time.time()
    tokens_seen = 0
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            loss = held_out_loss(model, eval_windows)
            curve.append({"step": step, "tokens": tokens_seen, "seconds": round(time.time() - t0),
                          "held_out_loss": round(loss, 4)})
            print(f"step {step:5d}  tokens {tokens_seen / 1e6:6.2f}M  {time.time() - t0:6.0f}s  "
                  f"held-out loss {loss:.4f}", flush=True)
            (out / "curve.json").write_text(json.dumps(curve, indent=1))
        if step == args.steps:
            break
        starts = rng.integers(0, len(train_ids) - (T + 1), size=args.batch)
        x = torch.from_numpy(np.stack([train_ids[s:s + T + 1] for s in starts])).to(args.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out_ = model(input_ids=x[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            out_.logits.float().reshape(-1, out_.logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += x[:, 1:].numel()
        if step % 50 == 0:
            print(f"step {step:5d}  train loss {loss.item():.4f}  lr {lr_at(step):.2e}", flush=True)
    train_seconds = time.time() - t0

    model = model.to("cpu")
    model.save_pretrained(hf_dir, safe_serialization=True)
    shutil.copy(out / "curve.json", hf_dir / "training_curve.json")
    summary = {"python": sys.version.split()[0], "torch": torch.__version__, "seed": args.seed,
               "parameters": n_params, "tokens_seen": tokens_seen, "train_seconds":
               round(train_seconds), "final_held_out_loss": curve[-1]["held_out_loss"],
               "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2), flush=True)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import mambalite

    for t in ("f32", "q8_0"):
        mambalite.export(hf_dir, out / f"model-{t}.gguf", type=t, progress=False)
        print(f"exported {out / f'model-{t}.gguf'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
