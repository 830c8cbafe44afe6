"""One vocabulary across the command line: each shared option means the same on every command
that takes it, old spellings still work with a warning naming the new one (or are refused with
it), and the README and the guide use the new spellings. Driven through `nextgpt.cli`."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
from nextgpt.cli import build_parser, main
from nextgpt.cli.options import MODEL_HELP, SEED_HELP, RenamedOptionWarning

REPO = Path(__file__).parents[1]
MODEL_COMMANDS = ("chat", "demo", "eval")
"""Commands that build a model: --model, --config and --set."""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,audio,video")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def options(command: str) -> dict[str, argparse.Action]:
    """The visible options of a sub-command, by option string."""
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {s: a for a in sub._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def test_shared_options_mean_the_same_everywhere(workdir):
    commands = {name: options(name) for name in ("chat", "demo", "eval", "export", "cache", "plugins", "new-plugin")}
    for name in (*MODEL_COMMANDS, "export", "cache"):
        model = commands[name]["--model"]
        assert MODEL_HELP in model.help and model.metavar == "NAME", name
    for name in MODEL_COMMANDS:
        assert commands[name]["--set"].help == commands["chat"]["--set"].help
        assert commands[name]["--config"].help == commands["chat"]["--config"].help
        seed = commands[name]["--seed"]
        assert seed.help == SEED_HELP and seed.default is None and seed.type is int, name
        assert commands[name]["--out"].metavar == "DIR"
    assert commands["new-plugin"]["--out"].metavar == "DIR"
    for name in ("plugins", "eval"):  # --json [FILE]: stdout, or a file
        json_option = commands[name]["--json"]
        assert json_option.nargs == "?" and json_option.const == "-" and json_option.metavar == "FILE"
        assert json_option.help == commands["plugins"]["--json"].help
    assert "--request" in commands["chat"]
    hidden = {"--preset", "--want", "--dir", "--no-progress"}
    assert not hidden & {s for c in commands.values() for s in c}, "old spellings are not advertised"
    # a model folder a command writes is its DIRECTORY argument
    for name in ("export", "convert-legacy"):
        parser, _ = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        assert any(a.metavar == "DIRECTORY" and not a.option_strings for a in sub._actions), name


def test_old_spellings_still_work_with_a_warning(workdir, capsys):
    parser, _ = build_parser()
    cases = [
        (["chat", "--preset", "tiny"], "model", "tiny", "--preset is an old spelling: use --model"),
        (["chat", "--want", "image", "--want", "audio"], "request", ["image", "audio"], "use --request"),
        (
            ["eval", "--model", "t", "--task", "caption", "--modality", "m", "--data", "d", "--no-progress"],
            "quiet",
            True,
            "use --quiet",
        ),
        (["new-plugin", "thermal", "--dir", "plugins"], "out", "plugins", "--dir is an old spelling: use --out"),
    ]
    for argv, dest, value, message in cases:
        with pytest.warns(RenamedOptionWarning, match=re.escape(message)):
            assert getattr(parser.parse_args(argv), dest) == value
    args = ["convert-legacy", "x.pt", "--vicuna", "v", "--imagebind", "i", "--out", "model"]
    assert main(args) == 1
    assert capsys.readouterr().err == (
        "error: --out is an old spelling: the model folder to write is now the second argument (CHECKPOINT DIRECTORY)\n"
    )


def test_interactive_want_is_the_old_name_of_request(tiny_model, tmp_path):
    import io

    from nextgpt.cli.chat_cmd import ChatSession, PendingTurn

    pending, out = PendingTurn(), io.StringIO()
    pending.command("/want image", ChatSession(tiny_model, tmp_path), out)
    pending.command("/request audio", ChatSession(tiny_model, tmp_path), out)
    assert pending.requested == ["image", "audio"]
    assert out.getvalue() == "(/want is an old name: use /request)\n"


def test_json_means_the_same_on_plugins_and_eval(workdir, capsys):
    from nextgpt_image.examples import example_image
    from nextgpt_image.media import save_image

    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["distribution"] for p in listed["plugins"]} == {"nextgpt-image", "nextgpt-audio", "nextgpt-video"}
    assert main(["plugins", "--json", "plugins.json"]) == 0
    assert "nextgpt-image" in capsys.readouterr().out  # the table, and the JSON in the file
    assert json.loads((workdir / "plugins.json").read_text()) == listed
    assert main(["plugins", "--json", "plugins.json"]) == 1
    assert "plugins.json: already exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert main(["plugins", "--json", "plugins.json", "--overwrite"]) == 0

    save_image(example_image(), workdir / "a.png")
    (workdir / "cc3m.json").write_text(json.dumps([{"caption": "a cat", "id": 1, "image_name": "a.png"}]))
    args = ["eval", "--model", "tiny", "--task", "caption", "--modality", "image", "--data", "cc3m.json"]
    capsys.readouterr()
    assert main([*args, "--max-new-tokens", "2", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # standard output holds the JSON alone
    assert report["task"] == "caption" and report["n_items"] == 1


def test_quiet_applies_to_the_command_not_to_its_in_process_caller(workdir, monkeypatch, capsys):
    from nextgpt.progress import progress_enabled

    monkeypatch.setenv("NEXTGPT_PROGRESS", "1")
    assert main(["demo", "--quiet", "--set", "seed=x"]) == 1  # ran with --quiet, stopped on the override
    assert progress_enabled()


def test_demo_takes_a_model_and_its_overrides(workdir, monkeypatch, capsys):
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image")
    assert main(["demo", "--model", "tiny", "--set", "llm.max_new_tokens=2", "--out", "d", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "1 files written under d/" in out
    assert list((workdir / "d").glob("turn1_image_0*.png"))


def test_readme_and_guide_use_the_current_spellings():
    old = re.compile(r"nextgpt [a-z-]+ [^\n`]*(--preset|--want|--no-progress|--dir )|/want |--model\.decoders")
    for path in (REPO / "README.md", REPO / "docs" / "plugin-guide.md", REPO / "examples" / "configs" / "README.md"):
        found = old.search(path.read_text())
        assert found is None, f"{path.name}: {found.group(0) if found else ''}"
