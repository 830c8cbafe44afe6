"""The README's code blocks and their test markers (used by test_readme.py and
benchmarks/readme_commands.py).

Every fenced block of the README is preceded by a marker comment:

* ``<!-- readme-test: run -->``: every command line of a ``bash`` block, or the whole of a
  ``python`` block, is run by the test suite as written (from a working folder holding the
  repository's ``examples/`` and ``benchmarks/`` and a ``.venv`` pointing at this environment);
  a line whose comment says ``long: TIME`` is not run;
* ``<!-- readme-test: long (TIME ...) -->``: not run; says how long it takes;
* ``<!-- readme-test: skip (REASON) -->``: not run; says why (installs packages, needs weights
  that are not here, is an outline).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^\s*<!-- readme-test: (?P<kind>run|skip|long)(?: \((?P<note>.+)\))? -->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
DURATION = re.compile(r"\d+(\.\d+)?\s*(s|min|minutes?|h)\b")


@dataclass
class Block:
    line: int
    """1-based line of the opening fence."""
    lang: str
    text: str
    kind: str | None
    """``run``, ``skip``, ``long``, or None when the block has no marker."""
    note: str | None


@dataclass
class Command:
    line: int
    text: str
    """The command as written (continuations joined, trailing comment removed)."""
    argv: list[str]
    long: str | None
    """The ``long: TIME`` note of a command that is not run, else None."""


def readme_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        body = textwrap.dedent("\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]))
        blocks.append(
            Block(
                index + 1,
                opening["lang"],
                body,
                marker["kind"] if marker else None,
                marker["note"] if marker else None,
            )
        )
        index = end + 1
    return blocks


def block_commands(block: Block) -> list[Command]:
    """The shell commands of a ``bash`` block: continuation lines joined, comments dropped."""
    commands: list[Command] = []
    pending, start = "", 0
    for number, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        if not pending:
            start = number
        stripped = raw.strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if not full or full.startswith("#"):
            continue
        lexer = shlex.shlex(full, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = ""
        argv, comment = [], ""
        for token in lexer:
            if token.startswith("#"):
                comment = full[full.index(token) :]
                break
            argv.append(token)
        note = re.search(r"long:\s*([^#]+)", comment)
        text = full[: full.index(comment)].strip() if comment else full
        commands.append(Command(start, text, argv, note.group(1).strip() if note else None))
    return commands
