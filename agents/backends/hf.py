"""A backend on a Hugging Face ``text-generation`` pipeline, generating a batch at a time.

The tokenizer and model are loaded with ``AutoTokenizer`` and ``AutoModelForCausalLM``, the
objects ``transformers.pipeline("text-generation", model=...)`` of the seed notebook loads (the
pipeline module itself costs seconds of CPU to import in every worker; :attr:`pipeline` builds
one on these objects when asked). :meth:`HFPipelineBackend.generate` calls the model directly
with one left-padded batch (the pipeline wrapper costs 7-18% per call on tiny-gpt2, and it
generates one prompt at a time). Decoding is greedy, so a prompt's text is the same whether it is generated
alone or in a batch, and the same as ``pipe(prompt, max_new_tokens=n, do_sample=False)``. For a
plain greedy model (the twin, tiny-gpt2) the backend runs its own decoding loop over the model's
forward instead of ``generate()`` (:mod:`.greedy`: the same forward calls and tokens, ~1.8x less
CPU per prompt at batch 32); any other model goes through ``generate()``.

Left padding and GPT-2 positions: ``generate()`` in transformers 5 derives ``position_ids`` from
the attention mask (``cumsum - 1``), so the first real token of a left-padded prompt gets
position 0, exactly as when it is generated alone. The tests check this on the logits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...protocol.chat import ChatRequest, ChatResult
from .base import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODEL, Generation
from .chatting import StopFilter, chat_result, cut_at_stop, render_chat
from .errors import ModelRejected
from .greedy import greedy_decode, plain_greedy
from .resolve import resolve_model
from .streaming import BatchStreamer, batch_decoder
from .twin import quiet_transformers

__all__ = ["EncodedBatch", "HFPipelineBackend", "configure_torch_threads", "preload", "release_free_memory"]

log = logging.getLogger(__name__)


def configure_torch_threads(threads: int) -> None:
    """Use ``threads`` intra-op (and, when still possible, inter-op) torch threads.

    One thread per worker process is the sane default on small machines: several workers with
    several threads each oversubscribe the cores. Torch allows setting the inter-op pool size
    only once, before any parallel work; later attempts are skipped with a debug log line.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError as exc:
            log.debug("torch inter-op threads left at %d: %s", torch.get_num_interop_threads(), exc)


def release_free_memory() -> None:
    """Collect garbage and give freed heap pages back to the OS (glibc ``malloc_trim``).

    Loading a model leaves tens of MiB of freed-but-kept heap in a worker (import-time and
    loading temporaries); returning them lowers every worker's resident set. A no-op where
    the C library has no ``malloc_trim``.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Prompts as one left-padded batch, ready for ``model.generate``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: tuple[bool, ...]
    kept_ids: tuple[tuple[int, ...], ...]


class HFPipelineBackend:
    """Greedy batched generation with a Hugging Face causal language model.

    Args:
        model: a hub id or a local directory; resolved with
            :func:`~baton.agents.backends.resolve.resolve_model`, so the default model falls back to
            the offline twin when the hub cannot be reached.
        threads: torch threads for this process (default 1).
        max_positions: context size to use, at most the model's own (default: the model's).
            Prompts longer than ``max_positions - max_new_tokens`` tokens keep their last tokens.
        flush_tokens, flush_ms: with ``on_tokens``, a prompt's new text is passed on every
            ``flush_tokens`` tokens or ``flush_ms`` milliseconds (:class:`BatchStreamer`).

    Attributes:
        name: the model name as asked for; ``resolved`` is what was actually loaded.
        tokenizer, model: what ``transformers.pipeline("text-generation", model=resolved)``
            would load (the tokenizer padding on the left, as the pipeline sets it).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        threads: int = 1,
        max_positions: int | None = None,
        flush_tokens: int = 16,
        flush_ms: float = 50,
    ) -> None:
        configure_torch_threads(threads)
        self.flush_tokens = flush_tokens
        self.flush_ms = flush_ms
        if threads == 1:
            # The Rust tokenizer would otherwise start its own thread pool (and warn after fork).
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.name = model
        self.threads = threads
        self.resolved = resolve_model(model)
        self.tokenizer: Any
        self.model: Any
        self.tokenizer, self.model = _preloaded.pop(self.resolved, None) or _load(self.resolved)
        self._pipeline: Any = None

        gen_config = self.model.generation_config
        eos = gen_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_token_ids: frozenset[int] = frozenset(eos_ids)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = gen_config.pad_token_id if gen_config.pad_token_id is not None else eos_ids[0]
        self.pad_token_id: int = int(pad)
        bos = gen_config.bos_token_id
        if bos is None:
            bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else pad
        # An empty prompt starts from bos, as `generate()` does when given no input ids.
        self._empty_prompt_ids: tuple[int, ...] = (int(bos),)

        model_positions = _model_positions(self.model.config)
        if max_positions is None:
            if model_positions is None:
                raise ValueError(f"{model}: its config states no context size; pass max_positions")
            max_positions = model_positions
        elif max_positions < 2 or (model_positions is not None and max_positions > model_positions):
            raise ValueError(
                f"max_positions must be in [2, {model_positions}] for {model}, got {max_positions}"
            )
        self.max_positions: int = max_positions
        self._generate_kwargs: dict[str, Any] = {
            "do_sample": False,
            "pad_token_id": self.pad_token_id,
        }
        # The same tokens as generate(), without its per-step overhead (greedy.py), when it can.
        self.fast_greedy: bool = plain_greedy(self.model)
        self.pads = True
        """A call is one padded batch in this process: its cost grows with its size times its longest
        prompt (an all-roles process splits its roles' batches for it: ``multirole.plan_calls``)."""
        self._decode_rows = batch_decoder(self.tokenizer)
        release_free_memory()

    @property
    def pipeline(self) -> Any:
        """A ``transformers`` text-generation pipeline on this backend's tokenizer and model, built
        on first use (importing the pipeline module is the slow part of loading)."""
        if self._pipeline is None:
            from transformers import pipeline

            with quiet_transformers():
                self._pipeline = pipeline("text-generation", model=self.model, tokenizer=self.tokenizer)
        return self._pipeline

    def __repr__(self) -> str:
        return (
            f"HFPipelineBackend({self.name!r}, resolved={self.resolved!r}, threads={self.threads},"
            f" max_positions={self.max_positions})"
        )

    def encode(self, prompts: Sequence[str], *, max_new_tokens: int) -> EncodedBatch:
        """Tokenize ``prompts`` into one left-padded batch, truncating each to fit the context.

        A prompt keeps at most ``max_positions - max_new_tokens`` tokens, its last ones.
        """
        budget = self.max_positions - max_new_tokens
        if budget < 1:
            raise ModelRejected(
                self.name,
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt"
                f" in its {self.max_positions}-token context",
            )
        # verbose=False: no "sequence length is longer than the maximum" warning; we truncate.
        ids_per_prompt: list[list[int]] = self.tokenizer(list(prompts), verbose=False)["input_ids"]
        kept: list[tuple[int, ...]] = []
        truncated: list[bool] = []
        for ids in ids_per_prompt:
            truncated.append(len(ids) > budget)
            kept.append(tuple(ids[-budget:]) if len(ids) > budget else tuple(ids))
        width = max(len(tokens) or 1 for tokens in kept)
        input_ids = torch.full((len(kept), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(kept), width), dtype=torch.long)
        for row, prompt_ids in enumerate(kept):
            tokens = prompt_ids or self._empty_prompt_ids
            input_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            attention_mask[row, width - len(tokens) :] = 1
        return EncodedBatch(input_ids, attention_mask, tuple(truncated), tuple(kept))

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        on_tokens: Callable[[int, str], None] | None = None, stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Greedily continue all ``prompts`` in one batched ``generate()`` call.

        Each result's ``text`` is the prompt followed by its continuation (special tokens
        skipped, as the pipeline does); a truncated prompt is replaced by the decoded text of
        the tokens kept. ``on_tokens(index, text)`` receives each prompt's continuation in
        chunks while it is generated; the results are the same with or without it. ``stop``
        cuts each continuation before the first of its strings (``new_tokens`` still counts
        every token generated).
        """
        batch, new_ids, continuations = self._continue(prompts, max_new_tokens, on_tokens, [stop] * len(prompts))
        results = []
        for prompt, was_cut, kept, ids, continuation in zip(
            prompts, batch.truncated, batch.kept_ids, new_ids, continuations, strict=True
        ):
            head = (
                self.tokenizer.decode(
                    list(kept), skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                if was_cut
                else prompt
            )
            results.append(Generation(head + cut_at_stop(continuation, stop)[0], len(ids), was_cut))
        return results

    def chat(
        self, requests: Sequence[ChatRequest], *, on_tokens: Callable[[int, str], None] | None = None,
    ) -> list[ChatResult]:
        """Answer chat requests through :func:`~baton.agents.backends.chatting.render_chat`, one
        batched ``generate()`` call per distinct ``max_new_tokens``. No tool calls (a text model)."""
        results: list[ChatResult | None] = [None] * len(requests)
        groups: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.max_new_tokens if request.max_new_tokens is not None
                              else DEFAULT_MAX_NEW_TOKENS, []).append(index)
        for max_new, indexes in groups.items():
            prompts = [render_chat(requests[i].messages, self.tokenizer) for i in indexes]
            routed = None if on_tokens is None else (lambda j, text, _ix=indexes: on_tokens(_ix[j], text))
            batch, new_ids, continuations = self._continue(prompts, max_new, routed,
                                                           [requests[i].stop for i in indexes])
            for j, i in enumerate(indexes):
                results[i] = chat_result(continuations[j], request=requests[i], max_new_tokens=max_new,
                                         prompt_tokens=len(batch.kept_ids[j]), new_tokens=len(new_ids[j]))
        return [r for r in results if r is not None]

    def _continue(
        self, prompts: Sequence[str], max_new_tokens: int, on_tokens: Callable[[int, str], None] | None,
        stops: Sequence[Sequence[str] | None],
    ) -> tuple[EncodedBatch, list[list[int]], list[str]]:
        """The encoded batch, each prompt's new token ids (up to its end-of-sequence) and their text."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not prompts:
            return EncodedBatch(torch.zeros((0, 0)), torch.zeros((0, 0)), (), ()), [], []
        batch = self.encode(prompts, max_new_tokens=max_new_tokens)
        new_ids: list[list[int]] = [[] for _ in prompts]
        if max_new_tokens > 0:
            stopping = StopFilter(on_tokens, stops) if on_tokens is not None and any(stops) else None
            streamer = self._streamer(len(prompts), stopping or on_tokens)
            if self.fast_greedy:
                rows = greedy_decode(self.model, batch.input_ids, batch.attention_mask, max_new_tokens=max_new_tokens,
                                     pad_token_id=self.pad_token_id, eos_token_ids=self.eos_token_ids,
                                     streamer=streamer)
            else:
                with torch.inference_mode():
                    output = self.model.generate(
                        input_ids=batch.input_ids,
                        attention_mask=batch.attention_mask,
                        max_new_tokens=max_new_tokens,
                        streamer=streamer,
                        **self._generate_kwargs,
                    )
                rows = output[:, batch.input_ids.shape[1]:].tolist()
            if stopping is not None:
                stopping.close()
            new_ids = [self._until_eos(row) for row in rows]
        continuations = self._decode_rows(new_ids)
        return batch, new_ids, continuations

    def _streamer(self, size: int, on_tokens: Callable[[int, str], None] | None) -> BatchStreamer | None:
        if on_tokens is None:
            return None
        return BatchStreamer(self.tokenizer, size, on_tokens, eos_token_ids=self.eos_token_ids,
                             flush_tokens=self.flush_tokens, flush_ms=self.flush_ms)

    def _until_eos(self, tokens: list[int]) -> list[int]:
        """Generated tokens up to and including the first end-of-sequence token."""
        for index, token in enumerate(tokens):
            if token in self.eos_token_ids:
                return tokens[: index + 1]
        return tokens


_preloaded: dict[str, tuple[Any, Any]] = {}


def preload(model: str) -> None:
    """Load ``model``'s tokenizer and weights now, for the first backend on it in each process
    forked from this one later (a fork server's warm-up; each child owns its copy-on-write copy)."""
    resolved = resolve_model(model)
    _preloaded[resolved] = _load(resolved)


def _load(resolved: str) -> tuple[Any, Any]:
    """The tokenizer (padding on the left, as the text-generation pipeline sets it for a decoder)
    and the model in eval mode, as ``transformers.pipeline("text-generation", model=resolved)``
    would load them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModelForCausalLM.from_pretrained(resolved).eval()
    tokenizer.padding_side = "left"
    return tokenizer, model


def _model_positions(config: Any) -> int | None:
    """The model's context size from its config, if it states one."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
