"""The web demo: `create_web_app(model)` returns a Gradio app over `NextGPTModel.generate`.

A multimodal chat box (text, and files of any installed modality by their extensions), the
modalities to generate as checkboxes, decode settings in an accordion, and the answer's media
shown inline: Gradio's chatbot shows a picture, a sound or a video by the file's type, and a
download link for anything else (a 3D mesh). Nothing here names a modality. Needs the ``serve``
extra (Gradio).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from nextgpt.config import DecodeOptions, validate_model
from nextgpt.errors import NextGPTError
from nextgpt.suggest import listing

if TYPE_CHECKING:
    from nextgpt.model import NextGPTModel

RANDOM_WEIGHTS_NOTICE = (
    "**This model has RANDOM weights** (a tiny preset built offline): its text is gibberish and its "
    "media are noise. The demo shows the whole path working, not model quality."
)


def has_random_weights(model: NextGPTModel) -> bool:
    """Whether the model is built from random tiny weights: every encoder and decoder has the
    source ``tiny`` (what the tiny presets use; see `nextgpt.config.EncoderSettings.source`)."""
    sources = []
    for cfg in model.modality_configs.values():
        sources += [cfg.encoder.source, *([cfg.decoder.source] if cfg.decoder is not None else [])]
    return bool(sources) and all(source == "tiny" for source in sources)


class WebChat:
    """What the page does, apart from Gradio: files to chat parts, one turn, the answer as
    chatbot messages. One model, one turn at a time (a lock), a history per browser session."""

    def __init__(self, model: NextGPTModel, out_dir: Path) -> None:
        self.model = model
        self.out_dir = out_dir
        self.by_extension = {ext: name for name, spec in model.specs.items() for ext in spec.extensions}
        self._lock = threading.Lock()

    def modality_of(self, path: str) -> str:
        suffix = Path(path).suffix.lower()
        if suffix not in self.by_extension:
            raise gr.Error(
                f"{Path(path).name}: this model reads no {suffix or 'extension-less'} files "
                f"(it reads: {listing(sorted(self.by_extension))})"
            )
        return self.by_extension[suffix]

    def decode(self, steps: float | None, guidance: float | None, seed: float | None) -> dict[str, DecodeOptions]:
        values = {"steps": steps, "guidance": guidance, "seed": seed}
        values = {k: (int(v) if k != "guidance" else float(v)) for k, v in values.items() if v not in (None, "")}
        try:
            options = validate_model(DecodeOptions, values, "decode settings")
        except NextGPTError as exc:
            raise gr.Error(str(exc)) from None
        return {name: options for name in self.model.decoders}

    def respond(
        self,
        box: dict[str, Any],
        shown: list[dict[str, Any]],
        history: list[dict[str, Any]],
        wanted: list[str],
        steps: float | None,
        guidance: float | None,
        seed: float | None,
    ) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
        """One turn: the box's text and files in; the cleared box, the chatbot's messages and
        the conversation (Hugging Face chat format) out."""
        text = (box or {}).get("text", "") or ""
        files = [f if isinstance(f, str) else f.get("path") for f in (box or {}).get("files", [])]
        if not text.strip() and not files:
            raise gr.Error("type a message or attach a file")
        parts = [{"type": self.modality_of(path), "path": path} for path in files]
        if text:
            parts.append({"type": "text", "text": text})
        message = {"role": "user", "content": parts}
        turn = len(history) // 2 + 1
        with self._lock:
            try:
                output = self.model.generate(
                    [*history, message],
                    output_dir=self.out_dir,
                    request=list(wanted or []),
                    decode=self.decode(steps, guidance, seed),
                    seed=int(seed) if seed not in (None, "") else None,
                    file_prefix=f"web_turn{turn}_",
                    progress=False,
                )
            except NextGPTError as exc:
                raise gr.Error(str(exc)) from None
        shown = [*shown, *({"role": "user", "content": {"path": path}} for path in files)]
        if text:
            shown.append({"role": "user", "content": text})
        shown.append({"role": "assistant", "content": output.text or "(no text)"})
        shown += [{"role": "assistant", "content": {"path": str(item.path)}} for item in output.media]
        return gr.MultimodalTextbox(value=None), shown, [*history, message, output.as_message()]


def create_web_app(model: NextGPTModel, out_dir: Path, title: str = "nextgpt") -> gr.Blocks:
    """The Gradio app; generated files go to ``out_dir`` (launch with ``allowed_paths=[out_dir]``)."""
    chat = WebChat(model, out_dir)
    extensions = sorted(chat.by_extension)
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"## {title}: any-to-any chat\nReads {listing(sorted(model.specs))}; "
            f"generates text and {listing(sorted(model.decoders))}."
        )
        if has_random_weights(model):
            gr.Markdown(RANDOM_WEIGHTS_NOTICE, elem_id="random-weights-notice")
        chatbot = gr.Chatbot(label="conversation", height=480, elem_id="conversation")
        history = gr.State([])
        wanted = gr.CheckboxGroup(choices=sorted(model.decoders), label="generate", elem_id="generate")
        with gr.Accordion("decode settings", open=False):
            steps = gr.Number(label="steps", value=None, precision=0, minimum=1)
            guidance = gr.Number(label="guidance", value=None, minimum=0)
            seed = gr.Number(label="seed", value=None, precision=0)
        box = gr.MultimodalTextbox(
            file_types=extensions,
            file_count="multiple",
            placeholder="Type a message; attach " + ", ".join(extensions) + " files",
            show_label=False,
            elem_id="message",
        )
        box.submit(
            chat.respond,
            [box, chatbot, history, wanted, steps, guidance, seed],
            [box, chatbot, history],
        )
    return app
