"""The model-backend contract: what a worker needs from a language model.

A backend turns a batch of prompts into a batch of :class:`Generation` results in one call,
so a worker that reads several messages at once can generate for all of them together
(batching is where the speed is for small CPU models). ``chat`` does the same for a batch of
chat requests (:mod:`baton.protocol.chat`, OpenAI's shape): an OpenAI-compatible server answers
them natively, tool calls included; text models answer through a chat template
(:mod:`~baton.agents.backends.chatting`) and never call tools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ...protocol.chat import ChatRequest, ChatResult

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "DEFAULT_MODEL", "ECHO_MODEL", "Generation", "ModelBackend", "is_http_model"]

DEFAULT_MAX_NEW_TOKENS = 40
"""New tokens per model call unless a role or ``BATON_MAX_NEW_TOKENS`` says otherwise."""

DEFAULT_MODEL = "sshleifer/tiny-gpt2"
"""The model the seed notebook uses, and baton's default."""

ECHO_MODEL = "echo"
"""The model name that selects the echo backend (no model: benchmarks and fault injection)."""


def is_http_model(model: str) -> bool:
    """Whether ``model`` names an OpenAI-compatible server (``http://`` or ``https://`` base URL)."""
    return model.startswith(("http://", "https://"))
"""New tokens per prompt when the caller does not say (the seed notebook uses 40)."""


@dataclass(frozen=True, slots=True)
class Generation:
    """One prompt's result.

    Attributes:
        text: the prompt followed by the continuation, exactly what the seed notebook reads from
            ``agent_model(prompt, max_new_tokens=40)[0]["generated_text"]``. When the prompt had
            to be truncated, the prompt part is the decoded text of the tokens that were kept.
        new_tokens: how many tokens the model generated for this prompt (an end-of-text token
            counts; padding after it does not).
        truncated: whether the prompt was cut (keeping its last tokens) to fit the context.
    """

    text: str
    new_tokens: int
    truncated: bool = False


@runtime_checkable
class ModelBackend(Protocol):
    """A text generator that workers call with a batch of prompts.

    Optional: ``probe()`` (asked while the circuit breaker is open: does the endpoint answer?) and
    ``pads`` (True when a call is one padded batch in this process, as the Hugging Face backend's:
    an all-roles process then gives each full batch its own call rather than one call for every role).
    """

    name: str
    """The model name the backend was asked for (e.g. ``"sshleifer/tiny-gpt2"``)."""

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        on_tokens: Callable[[int, str], None] | None = None, stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Generate a continuation for every prompt; results are in the order of ``prompts``.

        ``on_tokens(index, text)``, when given, receives the continuation of ``prompts[index]``
        in chunks while it is generated (or in one chunk, for backends that cannot stream); it
        never changes the results. ``stop``: each continuation ends before the first of these
        strings (not included).
        """
        ...

    def chat(
        self, requests: Sequence[ChatRequest], *, on_tokens: Callable[[int, str], None] | None = None,
    ) -> list[ChatResult]:
        """Answer every chat request; results are in the order of ``requests``.

        A request without ``max_new_tokens`` gets :data:`DEFAULT_MAX_NEW_TOKENS`. ``on_tokens``
        receives the answer text of ``requests[index]`` as :meth:`generate`'s does.
        """
        ...
