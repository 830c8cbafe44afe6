"""The backends table: generated from the registry (licence, commercial use, condition, memory),
the README's copy equal to it, and each backend card's declared condition of the same form as
the condition its decoder reads from its (tiny) pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nextgpt.catalogue import backend_rows, backends_markdown
from nextgpt.interfaces import BackendCard

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE = re.compile(r"<!-- backends-table: start -->\n(?P<table>.*?)\n<!-- backends-table: end -->", re.S)


def test_readme_table_is_the_registry_table(registry) -> None:
    found = TABLE.search(README.read_text(encoding="utf-8"))
    assert found, "README.md lacks the <!-- backends-table: start/end --> markers"
    assert found["table"] == backends_markdown(registry), (
        "README.md's backends table differs from the registry's: replace it with the rows of the image, "
        "audio and video plugins that `nextgpt plugins --backends-table` prints"
    )


def test_every_in_repo_backend_has_a_card_and_a_row(registry) -> None:
    rows = {(row[0], row[1], row[2].strip("`")): row for row in backend_rows(registry)}
    for kind, table in (("encoder", registry.encoders), ("decoder", registry.decoders)):
        for (modality, name), backend in table.items():
            assert backend.card is not None, f"{kind} {modality}:{name} declares no BackendCard"
            row = rows[(modality, kind, name)]
            assert row[4] == backend.licence.name and row[5].startswith(backend.licence.commercial)
            assert row[8] == f"{backend.card.memory_gib():.1f} GiB"
    flux = rows[("image", "decoder", "flux-schnell")]
    assert flux[5] == "yes" and flux[6] == "prompt_embeds [256, 4096] + pooled_prompt_embeds [768]"
    assert rows[("audio", "decoder", "stable-audio")][5] == (
        "restricted: commercial use only under USD 1M annual revenue"
    )


def test_memory_is_parameters_times_bytes() -> None:
    card = BackendCard(weights="x/y", parameters=2.0)
    assert card.memory_gib() == pytest.approx(2e9 * 2 / 2**30)
    assert card.memory_gib(4) == pytest.approx(2 * card.memory_gib())


@pytest.mark.parametrize(
    ("modality", "backend"),
    [("image", "pixart-sigma"), ("image", "flux-schnell"), ("video", "cogvideox"), ("video", "wan")],
)
def test_card_condition_has_the_form_the_decoder_reads(registry, modality: str, backend: str) -> None:
    """The card's condition (real weights) has the parts, masks and kinds of the condition the
    decoder reads from its tiny pipeline's configs: only the sizes differ."""
    entry = registry.decoder_backend(modality, backend)
    declared = entry.card.condition
    read = entry.build("tiny").condition_spec
    assert [(p.name, p.mask, p.pooled) for p in declared.parts] == [(p.name, p.mask, p.pooled) for p in read.parts]


def test_plugins_command_prints_the_table(capsys, monkeypatch, registry) -> None:
    from nextgpt.cli import main

    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,audio,video")
    assert main(["plugins", "--backends-table"]) == 0
    assert capsys.readouterr().out.strip() == backends_markdown(registry)
