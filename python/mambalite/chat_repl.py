"""The `mambalite chat` loop: read a message, stream the answer, keep the session's state.

Commands start with "/": /system TEXT, /reset, /save FILE, /load FILE, /stats, /help, /quit.
A line ending in a backslash continues on the next line, and a line of three double quotes
starts or ends a block of lines. Ctrl-C stops an answer (the partial answer stays in the
conversation) or clears the line being typed; Ctrl-D ends the chat.
"""

from __future__ import annotations

from typing import TextIO

from .chat import ChatSession

HELP = """commands:
  /system TEXT   set the system prompt (the next turn re-reads the conversation)
  /reset         start over (the system prompt stays)
  /save FILE     save the conversation and its state
  /load FILE     load a saved conversation and its state
  /stats         tokens held, state size, tokens read by the last turn
  /help          this list
  /quit          end the chat (or Ctrl-D)
end a line with \\ to go on to the next, or put lines between two lines of \"\"\""""


def _read_message(stdin: TextIO, stdout: TextIO, interactive: bool) -> str | None:
    """One message (several lines when continued); None at end of input."""
    lines: list[str] = []
    block = False
    while True:
        if interactive:
            stdout.write("... " if lines or block else ">>> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return "\n".join(lines) if lines else None
        line = line.rstrip("\n")
        if line.strip() == '"""':
            if block:
                return "\n".join(lines)
            block = True
            continue
        if block:
            lines.append(line)
        elif line.endswith("\\"):
            lines.append(line[:-1])
        else:
            lines.append(line)
            return "\n".join(lines)


def _command(session: ChatSession, line: str, stdout: TextIO) -> ChatSession | None:
    """Runs a /command; returns the session to go on with (None: quit)."""
    name, _, arg = line[1:].partition(" ")
    arg = arg.strip()
    if name in ("quit", "exit", "q"):
        return None
    if name == "help":
        print(HELP, file=stdout)
    elif name == "system":
        session.set_system(arg or None)
        print("system prompt " + ("set" if arg else "removed"), file=stdout)
    elif name == "reset":
        session.reset(session.system)
        print("conversation reset", file=stdout)
    elif name in ("save", "load"):
        if not arg:
            print(f"/{name} needs a file name", file=stdout)
        elif name == "save":
            session.save(arg)
            print(f"saved {len(session.messages)} messages ({session.state.n_tokens} tokens) "
                  f"to {arg}", file=stdout)
        else:
            try:
                session = ChatSession.load(session.model, arg, **session.sampling)
            except (OSError, ValueError) as e:
                print(f"could not load {arg}: {e}", file=stdout)
            else:
                print(f"loaded {len(session.messages)} messages ({session.state.n_tokens} "
                      "tokens)", file=stdout)
    elif name == "stats":
        st = session.state
        print(f"{st.n_tokens} tokens held, state {st.nbytes / 1e6:.1f} MB, last turn read "
              f"{session.last_prefill} new tokens", file=stdout)
    else:
        print(f"unknown command /{name}; /help lists them", file=stdout)
    return session


def run_repl(session: ChatSession, stdin: TextIO, stdout: TextIO) -> int:
    """The chat loop on a session; returns the exit code."""
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        print(f"mambalite chat with {session.model.path.name}; /help for commands, Ctrl-D to "
              "quit", file=stdout)
    while True:
        try:
            text = _read_message(stdin, stdout, interactive)
        except KeyboardInterrupt:
            stdout.write("\n")
            continue
        if text is None:
            if interactive:
                stdout.write("\n")
            return 0
        if not text.strip():
            continue
        if text.startswith("/"):
            session = _command(session, text.strip(), stdout)
            if session is None:
                return 0
            continue
        pieces = session.send(text, stream=True)
        try:
            for piece in pieces:
                stdout.write(piece)
                stdout.flush()
        except KeyboardInterrupt:
            pieces.close()  # the partial answer stays in the conversation
            stdout.write(" [stopped]")
        stdout.write("\n")
        stdout.flush()
