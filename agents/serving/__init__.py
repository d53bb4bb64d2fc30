"""``baton serve-model``: a local model behind an OpenAI-compatible HTTP API that workers reach as an
HTTP model (``BATON_MODEL=http://host:port/v1``).

The server (:mod:`.server`), its dynamic batching (:mod:`.batcher`), its API keys (:mod:`.apikeys`),
its request limits (:mod:`.limits`) and its streamed answers (:mod:`.sse`). It serves a model
backend (``agents/backends/``); no backend imports it.
"""
