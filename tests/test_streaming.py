"""Streaming one turn: ``generate(stream=True)`` events, the text-delta rules, ``nextgpt chat`` printing."""

from __future__ import annotations

import io

import pytest
from nextgpt.errors import ConfigError
from nextgpt.streaming import Finished, MediaReady, TextDelta


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def test_stream_yields_text_then_media_then_the_same_output_as_generate(tiny_model, tmp_path):
    plain = tiny_model.generate(ask("hello"), request=["image", "audio"], seed=3, progress=False)
    events = list(
        tiny_model.generate(ask("hello"), tmp_path, request=["image", "audio"], seed=3, progress=False, stream=True)
    )
    kinds = [type(e) for e in events]
    assert kinds[-1] is Finished and kinds.count(Finished) == 1
    assert kinds.count(TextDelta) >= 2  # the text came in pieces, before the media
    assert kinds.index(MediaReady) > max(i for i, k in enumerate(kinds) if k is TextDelta)
    output = events[-1].output
    assert output.text == plain.text and output.token_ids == plain.token_ids
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == output.text
    ready = [e.item for e in events if isinstance(e, MediaReady)]
    assert [m.modality for m in ready] == ["image", "audio"] and all(m.path.is_file() for m in ready)
    assert ready == output.media


def test_stream_raises_the_turns_error_from_the_iterator(tiny_model):
    events = tiny_model.generate(ask("hi"), request=["smell"], stream=True)
    with pytest.raises(ConfigError, match="request: modality 'smell'"):
        next(iter(events))


def test_chat_prints_the_answer_as_it_streams(tiny_model, tmp_path):
    from nextgpt.cli.chat_cmd import ChatSession

    class Watching(io.StringIO):
        """Records what had been written each time the chat flushed."""

        def __init__(self) -> None:
            super().__init__()
            self.flushed: list[str] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    out = Watching()
    session = ChatSession(tiny_model, tmp_path, max_new_tokens=6, seed=0)
    session.interactive(io.StringIO("/request image\nhello\n/quit\n"), out, [], [])
    answer = session.history[-1]["content"][0]["text"]
    shown = out.getvalue().splitlines()
    assert f"assistant: {answer}" in shown and any(line.startswith("  [image] ") for line in shown)
    partial = [text for text in out.flushed if "assistant: " in text and "[image]" not in text]
    assert len(partial) >= 2  # the text was shown piece by piece, before the media line
