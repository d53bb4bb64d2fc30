"""Turn a model name into what ``transformers.pipeline(model=...)`` should load.

The default model, ``sshleifer/tiny-gpt2``, comes from the local Hugging Face cache when it is
there; when it is not and the hub cannot be reached (``HF_HUB_OFFLINE`` set, or a quick
connection check fails), the offline twin (:mod:`baton.agents.backends.twin`) is used instead, so
baton runs on machines without network access. The check takes at most ~1.5 s, instead of the
~23 s that huggingface_hub spends retrying before it gives up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .base import DEFAULT_MODEL
from .local import require_local
from .twin import build_twin, twin_path

__all__ = [
    "HUB_CHECK_TIMEOUT",
    "cached_snapshot",
    "hub_unavailable",
    "resolve_model",
]

log = logging.getLogger(__name__)

HUB_CHECK_TIMEOUT = 1.5
"""Seconds the hub reachability check may take, DNS lookup included."""

_TRUE = {"1", "on", "yes", "true"}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_announced: set[str] = set()


def resolve_model(name: str) -> str:
    """Return the model id or directory to pass to ``pipeline(model=...)`` for ``name``.

    - a local directory: returned as is;
    - :data:`DEFAULT_MODEL`: its snapshot directory in the local Hugging Face cache if it is
      cached; else, if the hub cannot be reached, the offline twin's directory (built if
      missing, and announced with one log line); else the hub id, to be downloaded;
    - any other hub id: returned as is (loading it fails with an error that names it if it
      cannot be fetched).

    Raises :class:`~baton.agents.backends.local.LocalModelsMissing` without the ``baton[local]`` extra.
    """
    require_local(name)
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    if name != DEFAULT_MODEL:
        return name
    cached = cached_snapshot(name)
    if cached is not None:
        return cached
    reason = hub_unavailable()
    if reason is None:
        return name
    path = build_twin(twin_path())
    key = str(path)
    if key not in _announced:
        _announced.add(key)
        log.warning(
            "%s cannot be fetched from the hub (%s); using the offline twin at %s",
            name,
            reason,
            path,
        )
    return key


def cached_snapshot(repo_id: str) -> str | None:
    """The snapshot directory of ``repo_id`` in the local Hugging Face cache, if usable.

    Usable means its ``config.json`` and a weights file are cached. Never touches the network.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    config = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    if not any((snapshot / weights).is_file() for weights in _WEIGHT_FILES):
        return None
    return str(snapshot)


def hub_unavailable(timeout: float = HUB_CHECK_TIMEOUT) -> str | None:
    """Why the Hugging Face hub cannot be reached, or ``None`` if a connection succeeds.

    Offline when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set; otherwise tries a TCP
    connection to the hub endpoint (``HF_ENDPOINT``), or to the HTTPS proxy if one is
    configured, bounded by ``timeout`` seconds including the DNS lookup.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT") or _hub_endpoint()
    url = urlsplit(endpoint)
    if not url.hostname:
        return f"the hub endpoint {endpoint!r} names no host"
    host, port = url.hostname, url.port or (80 if url.scheme == "http" else 443)
    proxy = urllib.request.getproxies().get(url.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if purl.hostname:
            host, port = purl.hostname, purl.port or 80
    error = _probe(host, port, timeout)
    return None if error is None else f"{host}:{port} unreachable: {error}"


def _hub_endpoint() -> str:
    """huggingface_hub's own default endpoint (a dependency of transformers)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Try a TCP connection in a daemon thread so a slow DNS lookup cannot exceed ``timeout``."""
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=attempt, name="baton-hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"no answer within {timeout:g} s"
    return result[0]
