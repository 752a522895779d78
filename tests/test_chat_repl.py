"""`mambalite chat`: the REPL's commands, multi-line input, Ctrl-C during an answer, and the
command line end to end (stdin piped)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from mambalite.chat_repl import run_repl

from test_chat import _build, chat_tokenizer

GREEDY = dict(temperature=0, max_new_tokens=8)


@pytest.fixture(scope="module")
def model(tmp_path_factory, bpe_tokenizer):
    return _build("mamba1", tmp_path_factory.mktemp("repl") / "ckpt",
                  chat_tokenizer(bpe_tokenizer))


def _repl(model, text: str, **kw):
    session = model.chat_session(**GREEDY, **kw)
    out = io.StringIO()
    assert run_repl(session, io.StringIO(text), out) == 0
    return out.getvalue(), session


def test_turns_commands_and_multiline(model, tmp_path):
    f = tmp_path / "c.chat"
    text = ("Hello\n/stats\n/save " + str(f) + "\nfirst\\\nsecond\n/reset\n/load " + str(f) +
            '\n"""\nline a\n\nline b\n"""\n/system Be brief.\n/nonsense\n/quit\nnot read\n')
    out, _ = _repl(model, text)
    ref = model.chat_session(**GREEDY)
    a1 = ref.send("Hello")
    a2 = ref.send("first\nsecond")
    ref.reset()
    ref = type(ref).load(model, f, **GREEDY)  # back to after "Hello"
    a3 = ref.send("line a\n\nline b")
    lines = out.splitlines()
    assert out.index(a1) < out.index("saved 2") < out.index(a2, out.index("saved 2"))
    assert a3 in out[out.index("loaded 2"):]
    assert any(ln.startswith("saved 2 messages") for ln in lines)
    assert any(ln.startswith("loaded 2 messages") for ln in lines)
    assert "conversation reset" in lines and "system prompt set" in lines
    assert any("unknown command /nonsense" in ln for ln in lines)
    assert any("tokens held" in ln for ln in lines)


def test_ctrl_c_stops_the_answer_not_the_session(model):
    class Interrupting(io.StringIO):
        armed = True

        def write(self, s: str) -> int:
            if self.armed and s.strip() and not s.startswith((">>>", "...")):
                self.armed = False
                raise KeyboardInterrupt
            return super().write(s)

    session = model.chat_session(**GREEDY)
    out = Interrupting()
    assert run_repl(session, io.StringIO("Hello\nAgain\n"), out) == 0
    assert "[stopped]" in out.getvalue()
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    ref = model.chat_session(**GREEDY)
    ref.send("Hello")
    assert session.messages[3]["content"] != "" and len(session.messages[1]["content"]) < \
        len(ref.messages[1]["content"]) + 1


def test_command_line_chat(model):
    r = subprocess.run([sys.executable, "-m", "mambalite", "chat", "-m", str(model.path),
                        "--temperature", "0", "-n", "8", "--system", "Be terse."],
                       input="Hello\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = model.chat_session(system="Be terse.", **GREEDY).send("Hello")
    assert r.stdout.strip("\n") == want.strip("\n") or want in r.stdout
    r = subprocess.run([sys.executable, "-m", "mambalite", "chat"], input="", text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 1 and "no chat template" in r.stderr
