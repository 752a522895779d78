"""Chat templates: a model's Jinja template rendered as transformers renders it (a sandboxed
environment with trim_blocks and lstrip_blocks, loop controls, `raise_exception`,
`strftime_now` and a `tojson` that does not escape HTML), so that the prompt text is exactly
what transformers' `apply_chat_template` gives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(template: str):
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # pragma: no cover - jinja2 is a dependency
        raise ImportError("chat templates need jinja2: pip install jinja2") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"the chat template is not valid Jinja (line {e.lineno}: {e.message}); "
                         "pass a working one as chat_template=") from None


def render_chat_template(template: str, messages: Sequence[dict[str, Any]], *,
                         add_generation_prompt: bool = True,
                         tools: Sequence[dict[str, Any]] | None = None,
                         documents: Sequence[dict[str, Any]] | None = None,
                         **variables: Any) -> str:
    """The prompt text of `messages` (OpenAI-style dicts with "role" and "content") under a Jinja
    chat template. `variables` (bos_token, eos_token, ...) are passed to the template as
    transformers passes a tokenizer's special tokens. A template's own `raise_exception` (for
    example, roles out of order) becomes a ValueError."""
    import jinja2

    if isinstance(messages, dict) or not all(isinstance(m, dict) for m in messages):
        raise TypeError("messages must be a list of dicts such as "
                        "{'role': 'user', 'content': 'Hi'}")
    compiled = _compile(template)
    try:
        return compiled.render(messages=list(messages), tools=tools, documents=documents,
                               add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"the chat template refused these messages: {e}") from None
