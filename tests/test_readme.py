"""The README's commands and Python snippets work as written.

Blocks are read from README.md (`readme_blocks`), so the test cannot drift from the text: every
block must carry a marker, and every ``readme-test: run`` block is run here, in order, in one
working folder that holds the repository's ``examples/`` and ``benchmarks/`` and a ``.venv``
that points at this environment. Commands run in this process (``nextgpt ...`` through
`nextgpt.cli.main`, ``python -m MODULE`` and ``python FILE`` through `runpy`), which saves the
seconds of importing torch for each; ``benchmarks/readme_commands.py`` runs and times each one
as a separate process, the way a user does.
"""

from __future__ import annotations

import io
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch
from readme_blocks import DURATION, Block, block_commands, readme_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = readme_blocks(README)
RUN = [b for b in BLOCKS if b.kind == "run"]


def test_every_block_is_marked_and_not_run_ones_say_why():
    for block in BLOCKS:
        assert block.kind is not None, f"README.md:{block.line}: a code block without a readme-test marker"
        if block.kind == "long":
            assert block.note and DURATION.search(block.note), f"README.md:{block.line}: say how long it takes"
        if block.kind == "skip":
            assert block.note, f"README.md:{block.line}: say why it is not run"
        if block.kind == "run":
            assert block.lang in ("bash", "python"), f"README.md:{block.line}: run blocks are bash or python"
            for command in block_commands(block) if block.lang == "bash" else []:
                assert command.argv[0] in PROGRAMS, f"README.md:{command.line}: cannot run {command.argv[0]!r} here"
                assert command.long is None or DURATION.search(command.long)
    assert len(RUN) >= 5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder like the repository root after `make install`, where the README's commands run."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("examples", "benchmarks"):
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


@pytest.fixture
def isolated(workdir, monkeypatch):
    """Run in ``workdir`` with empty standard input; put back what the commands change in the
    process (threads, progress setting, argv)."""
    from nextgpt.progress import set_progress

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("NEXTGPT_PROGRESS", "0")
    threads = torch.get_num_threads()
    yield workdir
    torch.set_num_threads(threads)
    set_progress(None)


def exit_code(run) -> int:
    """Run a program's main; its return value or ``sys.exit`` code."""
    try:
        code = run()
    except SystemExit as stop:
        code = stop.code
    return 0 if code is None else code if isinstance(code, int) else 1


def run_nextgpt(argv: list[str]) -> int:
    from nextgpt.cli import main

    return exit_code(lambda: main(argv))


def run_python(argv: list[str]) -> int:
    """``python -m MODULE ARGS`` or ``python FILE ARGS``, in this process."""
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        return exit_code(lambda: runpy.run_module(argv[1], run_name="__main__", alter_sys=True) and None)
    sys.argv = list(argv)
    return exit_code(lambda: runpy.run_path(argv[0], run_name="__main__") and None)


PROGRAMS = {
    "nextgpt": run_nextgpt,
    ".venv/bin/nextgpt": run_nextgpt,
    "python": run_python,
    ".venv/bin/python": run_python,
}


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[f"line{b.line}-{b.lang}" for b in RUN])
def test_readme_block_runs(block: Block, isolated: Path):
    if block.lang == "python":
        script = isolated / f"readme_{block.line}.py"
        script.write_text(block.text)
        assert run_python([str(script)]) == 0
        return
    for command in block_commands(block):
        if command.long:
            continue
        code = PROGRAMS[command.argv[0]](command.argv[1:])
        assert code == 0, f"README.md:{command.line}: `{command.text}` exited with {code}"
        os.chdir(isolated)  # a command may not move the others
