"""Serving a model: an OpenAI-compatible HTTP server (``nextgpt serve``) and a Gradio web demo
(``nextgpt web``), thin layers over `NextGPTModel.generate`. Needs the ``serve`` extra
(``pip install 'nextgpt-core[serve]'``: FastAPI, uvicorn, Gradio).

- `nextgpt.serving.settings`: limits, queue and API key (`ServeSettings`); the request body.
- `nextgpt.serving.openai_format`: OpenAI content parts to and from the Hugging Face chat format.
- `nextgpt.serving.worker`: one model, one worker thread, a bounded queue.
- `nextgpt.serving.app`: `create_app`, the FastAPI application.
- `nextgpt.serving.web`: `create_web_app`, the Gradio application.
"""

from __future__ import annotations

from nextgpt.serving.settings import ChatCompletionRequest, ServeSettings

__all__ = ["ChatCompletionRequest", "ServeSettings"]
