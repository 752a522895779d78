"""The `mambalite` command: generate, chat, serve, perplexity, export, quantize, bench, info.

Exit codes: 0 success, 1 runtime error (bad file, bad model, I/O), 2 usage error, 130 on Ctrl-C.
Errors are printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _add_writer_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that write GGUF files."""
    p.add_argument("--head-type", default="q6_k", choices=["q6_k", "q8_0"],
                   help="output head type in q4_0 files: q6_k (default, as llama-quantize) or "
                   "q8_0")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


_MODEL_HELP = "GGUF model file (default: the small model shipped with mambalite)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mambalite",
        description="Fast, constant-memory inference for Mamba language models (GGUF files).",
    )
    p.add_argument("--version", action="version", version=f"mambalite {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    g = sub.add_parser("generate", help="generate text from a prompt",
                       description="Generate a continuation of PROMPT and stream it to stdout.")
    g.add_argument("prompt", nargs="?", default=None,
                   help="the prompt text; omit it or give '-' to read it from stdin")
    g.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    _add_sampling(g, max_new_tokens=128)
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when TEXT is generated (repeatable; TEXT is not printed)")
    g.add_argument("--token-healing", dest="token_healing", action="store_true", default=False,
                   help="re-generate the prompt's last token so that the model picks where it "
                   "ends (off by default, so that --temperature 0 is plain greedy; see the README)")
    g.add_argument("--no-token-healing", dest="token_healing", action="store_false",
                   help=argparse.SUPPRESS)  # the default now; accepted for older scripts
    g.add_argument("-t", "--threads", type=_positive_int, default=None,
                   help="compute threads (default: all cores)")
    _add_device(g)

    c = sub.add_parser("chat", help="chat with an instruct model in the terminal",
                       description="An interactive chat with the model's own template. Each turn "
                       "prefills only its new tokens. End a line with \\ to continue it; type "
                       "/help for the commands (/system, /reset, /save, /load, /quit). Ctrl-C "
                       "stops an answer, Ctrl-D ends the chat.")
    c.add_argument("-m", "--model", default=None, help="GGUF model file with a chat template")
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument("--chat-template", default=None, metavar="FILE",
                   help="a Jinja chat template file to use instead of the model's")
    _add_sampling(c, max_new_tokens=1024)
    c.add_argument("-t", "--threads", type=_positive_int, default=None,
                   help="compute threads (default: all cores)")
    _add_device(c)

    s = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                       description="An OpenAI-compatible server: /v1/chat/completions, "
                       "/v1/completions, /v1/models, /health (needs: pip install "
                       "\"mambalite[server]\").")
    s.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    s.add_argument("--api-key", default=None,
                   help="require this key (Authorization: Bearer KEY) on every request")
    s.add_argument("--model-name", default=None,
                   help="the model id clients see (default: the file's name without .gguf)")
    s.add_argument("--max-batch", type=int, default=32, metavar="N",
                   help="concurrent streams stepped together in one pass over the weights "
                   "(continuous batching; 1 turns it off; default 32)")
    s.add_argument("--state-cache-mb", type=float, default=512.0, metavar="MB",
                   help="memory for the state cache of conversation prefixes (default 512)")
    s.add_argument("--state-dir", default=None, metavar="DIR",
                   help="also keep the state cache in DIR (survives restarts)")
    s.add_argument("--max-tokens", type=_positive_int, default=4096, metavar="N",
                   help="the most tokens one request may generate (default 4096)")
    s.add_argument("--chat-template", default=None, metavar="FILE",
                   help="a Jinja chat template file to use instead of the model's")
    s.add_argument("-t", "--threads", type=_positive_int, default=None,
                   help="compute threads (default: all cores)")
    _add_device(s)

    pp = sub.add_parser("perplexity", help="measure a model's perplexity on a text file",
                        description="Token-level cross-entropy and perplexity of a text file "
                        "(UTF-8) under a model: every token after the first is predicted from "
                        "the ones before it.")
    pp.add_argument("file", help="text file ('-' reads stdin)")
    pp.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    pp.add_argument("-w", "--window", type=_positive_int, default=None, metavar="N",
                    help="score independent windows of N tokens, each from a fresh state "
                    "(default: the whole file in one state, full context)")
    pp.add_argument("-t", "--threads", type=_positive_int, default=None,
                    help="compute threads (default: all cores)")
    _add_device(pp)
    pp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="convert a PyTorch checkpoint to GGUF",
                       description="Convert a Mamba-1, FalconMamba or Mamba-2 checkpoint "
                       "directory (transformers, mamba_ssm or mistral format), or a hybrid "
                       "(Granite-4.0-H, Bamba, Nemotron-H, Jamba, Falcon-H1; transformers "
                       "format), to a GGUF file that mambalite and llama.cpp load.")
    e.add_argument("checkpoint", help="directory with config.json (or mistral's params.json) "
                   "and the weights")
    e.add_argument("-o", "--output", required=True, help="GGUF file to write")
    e.add_argument("--type", default="f16",
                   choices=["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"],
                   help="weight type of the matrices (default f16; the K-quant mixes are "
                   "llama-quantize's)")
    _add_writer_options(e)

    q = sub.add_parser("quantize", help="quantize a GGUF model (q8_0, q4_0, q4_k_m, ...)",
                       description="Write a copy of an f32/f16/bf16 GGUF model with its "
                       "matrices quantized: llama-quantize's block formats, per-tensor types "
                       "and reference quantizers, so the file equals its output byte for byte.")
    q.add_argument("input", help="f32, f16 or bf16 GGUF model")
    q.add_argument("output", help="GGUF file to write")
    q.add_argument("--type", default="q8_0",
                   choices=["q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"],
                   help="quantization type (default q8_0)")
    _add_writer_options(q)

    b = sub.add_parser("bench", help="measure a model's speed",
                       description="Median prefill tokens/s, decode ms/token and the achieved "
                       "bandwidth (weights read per decoded token) of a GGUF model.")
    b.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    b.add_argument("-t", "--threads", type=_positive_int, action="append", default=None,
                   help="compute threads (repeatable; default: all cores)")
    _add_device(b)
    b.add_argument("-p", "--prefill", type=_positive_int, default=512, metavar="N",
                   help="prompt length for the prefill measurement (default 512)")
    b.add_argument("-n", "--decode", type=_positive_int, default=64, metavar="N",
                   help="tokens decoded per run (default 64)")
    b.add_argument("-r", "--repeats", type=_positive_int, default=3,
                   help="runs; medians are reported (default 3)")

    i = sub.add_parser("info", help="describe a GGUF model file",
                       description="Print a GGUF model's architecture, shapes, tensor types, "
                       "tokenizer and size.")
    i.add_argument("model", nargs="?", default=None,
                   help="GGUF model file (default: the model shipped with mambalite)")
    i.add_argument("--tensors", action="store_true", help="also list every tensor")
    return p


def _add_sampling(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("-n", "--max-new-tokens", type=int, default=max_new_tokens, metavar="N",
                   help=f"maximum number of tokens to generate (default {max_new_tokens})")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="keep the K most likely tokens; 0 "
                   "disables (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass; 1 disables "
                   "(default 0.95)")
    p.add_argument("--min-p", type=float, default=0.0, help="drop tokens below MIN_P times the "
                   "most likely one's probability (default 0: off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="penalty for tokens already seen; 1 disables (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible output")


_MMAP = {"auto": None, "on": True, "off": False}


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (default), or cuda / cuda:N to run on an NVIDIA GPU")
    p.add_argument("-c", "--ctx-size", type=_positive_int, default=None, metavar="N",
                   help="KV cache positions for models with attention layers (default: the "
                   "model's context length, at most 8192)")
    p.add_argument("--kv-type", default="f16", choices=["f16", "f32", "q8_0"],
                   help="KV cache storage for models with attention layers (default f16)")
    p.add_argument("--mmap", default="auto", choices=["auto", "on", "off"],
                   help="map the weights (on: shared with other processes, read as used) or read "
                   "them into huge-page memory (off: faster decode); auto (default) reads when "
                   "huge pages are available and the file fits easily in free memory")


def _generate(args: argparse.Namespace) -> int:
    from .model import load

    prompt = args.prompt
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ValueError("no prompt: give it as an argument or pipe it to stdin")
        prompt = sys.stdin.read()
    model = load(args.model, threads=args.threads, device=args.device,
                 n_ctx=args.ctx_size, kv_type=args.kv_type, mmap=_MMAP[args.mmap])
    out = sys.stdout
    for piece in model.generate(
        prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop,
        stream=True, token_healing=args.token_healing,
    ):
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


def _read_template(path: str | None) -> str | None:
    from pathlib import Path

    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"chat template file {p} does not exist")
    return p.read_text(encoding="utf-8")


def _chat(args: argparse.Namespace) -> int:
    from .chat_repl import run_repl
    from .model import load

    model = load(args.model, threads=args.threads, device=args.device,
                 n_ctx=args.ctx_size, kv_type=args.kv_type, mmap=_MMAP[args.mmap])
    sampling = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                    repetition_penalty=args.repetition_penalty, seed=args.seed)
    session = model.chat_session(system=args.system,
                                 chat_template=_read_template(args.chat_template), **sampling)
    return run_repl(session, sys.stdin, sys.stdout)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .model import load
    from .server import ServerOptions, serve

    model = load(args.model, threads=args.threads, device=args.device,
                 n_ctx=args.ctx_size, kv_type=args.kv_type, mmap=_MMAP[args.mmap])
    name = args.model_name or Path(model.path).name.removesuffix(".gguf")
    options = ServerOptions(model_name=name, api_key=args.api_key,
                            state_cache_mb=args.state_cache_mb, state_dir=args.state_dir,
                            max_batch=args.max_batch,
                            max_tokens=args.max_tokens,
                            chat_template=_read_template(args.chat_template))
    print(f"mambalite: serving {name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    serve(model, host=args.host, port=args.port, options=options)
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .model import load

    if args.file == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ValueError("no text: give a file, or pipe the text to stdin with '-'")
        text = sys.stdin.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"text file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                             "give a UTF-8 text file") from None
    if not text:
        raise ValueError(f"{args.file} is empty: give a text to score")
    model = load(args.model, threads=args.threads, device=args.device,
                 n_ctx=args.ctx_size, kv_type=args.kv_type, mmap=_MMAP[args.mmap])
    result = model.perplexity(text, window=args.window, progress=False if args.quiet else None)
    print(result)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export

    path = export(args.checkpoint, args.output, args.type, head_type=args.head_type,
                  progress=not args.quiet)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from .quantize import quantize

    path = quantize(args.input, args.output, args.type, head_type=args.head_type,
                    progress=not args.quiet)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench

    if args.model is None:
        from .model import default_model_path

        args.model = str(default_model_path())
    print(f"{args.model}:")
    for threads in args.threads or [None]:
        print("  " + str(bench(args.model, threads=threads, prefill_tokens=args.prefill,
                               decode_tokens=args.decode, repeats=args.repeats,
                               device=args.device, n_ctx=args.ctx_size,
                               kv_type=args.kv_type, mmap=_MMAP[args.mmap])), flush=True)
        if args.device != "cpu":
            break  # threads do not matter on a GPU
    return 0


def _info(args: argparse.Namespace) -> int:
    from .info import describe

    if args.model is None:
        from .model import default_model_path

        args.model = default_model_path()
    print(describe(args.model, list_tensors=args.tensors))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mambalite` command; returns the exit code."""
    args = _parser().parse_args(argv)
    handler = {"generate": _generate, "chat": _chat, "serve": _serve, "perplexity": _perplexity,
               "export": _export, "quantize": _quantize, "bench": _bench,
               "info": _info}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        sys.stderr.close()
        return 0
    except (OSError, ValueError, RuntimeError, TypeError, ImportError) as e:
        lines = [ln.strip().lstrip("- ") for ln in str(e).splitlines() if ln.strip()]
        msg = "; ".join(lines) or type(e).__name__
        print(f"mambalite: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
