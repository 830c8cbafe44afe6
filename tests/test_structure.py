"""The seams of the code base: core never names a modality, and the public import paths work.

- Core (``core/src/nextgpt``) never branches on a modality: everything that differs per
  modality reaches it through a plugin's interfaces. `test_core_never_names_a_modality`
  enforces the rule below on the source itself.
- ``from nextgpt import NextGPTModel, ...`` is the front door; ``import nextgpt`` stays light (the
  names are imported on first use); ``python -m nextgpt`` is the ``nextgpt`` command; every import
  path the README, the docs and the packages' READMEs quote imports (they are read from the
  Markdown, so this test cannot drift from the text).
"""

from __future__ import annotations

import ast
import importlib
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src" / "nextgpt"
REPO_PACKAGES = sorted({p.name for p in ROOT.glob("*/src/*")} | {p.name for p in ROOT.glob("*/*/src/*")})
"""The import packages this repository holds (nextgpt, nextgpt_image, ..., toy_world)."""


# -- core never names a modality -------------------------------------------------------------------
#
# The rule, checked on core's Python source outside docstrings and comments (which may use the
# words: they explain, e.g. "an image takes 4 signal tokens"):
#
# 1. no string literal IS a modality name ("image", "audio", "video", "3d"): comparing with one,
#    looking one up, defaulting to one or keying a table by one all need such a literal;
# 2. no name core defines (module-level or local variable, function, class, argument, import
#    alias, attribute it assigns) has a modality name as one of its words (split at "_" and at
#    camel-case humps; "ImageBind", the encoder's proper name, is one word): a function or a
#    constant for one modality (`image_to_imagebind`, `AUDIO_SAMPLE_RATE`) is a branch by
#    another route;
# 3. no module or package of core is named after a modality.
#
# A literal that merely contains the word ("imagebind", "{name}_0") is not a modality identifier.
# The exceptions are facts about things outside the project, each listed with its reason; an
# exception that is no longer needed fails the test, so the list cannot go stale.

MODALITY_NAMES = ("image", "audio", "video", "3d")
"""The in-repo plugins' modalities (checked against what they register, below)."""

ALLOWED: dict[tuple[str, str], str] = {
    ("legacy/checkpoint.py", "image"): "the released checkpoint's projector keys name its modalities",
    ("legacy/checkpoint.py", "video"): "the released checkpoint's projector keys name its modalities",
    ("legacy/checkpoint.py", "audio"): "the released checkpoint's projector keys name its modalities",
    ("presets.py", "image"): "the released checkpoint's vocabulary order (RELEASED_MODALITY_ORDER)",
    ("presets.py", "video"): "the released checkpoint's vocabulary order (RELEASED_MODALITY_ORDER)",
    ("presets.py", "audio"): "the released checkpoint's vocabulary order (RELEASED_MODALITY_ORDER)",
    ("evaluation/clip.py", "get_image_features"): "the method torchmetrics' CLIPScore calls on a CLIP model",
}


def _words(name: str) -> list[str]:
    """The words of an identifier: ``get_image_features`` -> get, image, features;
    ``ImageBindEncoder`` -> imagebind, encoder."""
    name = re.sub("(?i)imagebind", "_imagebind_", name)
    return [w.lower() for chunk in name.split("_") for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", chunk)]


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function, and the
    attribute docstrings that follow an assignment)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for index, statement in enumerate(body):
            is_string = (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            )
            if is_string and (index == 0 or isinstance(body[index - 1], ast.Assign | ast.AnnAssign)):
                found.add(id(statement.value))
    return found


def _defined_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every name the module defines."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            names.append((node.lineno, node.arg))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.append((node.lineno, node.attr))
        elif isinstance(node, ast.alias) and node.asname:
            names.append((node.lineno, node.asname))
    return names


def modality_names_in(source: str, modalities: tuple[str, ...] = MODALITY_NAMES) -> list[tuple[int, str]]:
    """(line, what) of every use of a modality name in Python ``source`` that the rule forbids."""
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value.strip().lower() in modalities:
                found.append((node.lineno, node.value))
    for line, name in _defined_names(tree):
        if set(_words(name)) & set(modalities):
            found.append((line, name))
    return found


def test_the_rule_catches_a_branch_and_passes_prose():
    branch = 'def encode(name):\n    if name == "audio":\n        return 1\n'
    lookup = "def f(specs):\n    return specs['video']\n"
    helper = "def image_to_tensor(x):\n    return x\n"
    constant = "VIDEO_FPS = 8\n"
    prose = '"""Encodes an image, a sound or a video."""\n\ndef f(x):\n    """The image\'s pixels."""\n    return x\n'
    mentions = 'NAME = "imagebind"\nPATTERN = "{name}_0"\n# an image here\nclass ImageBindEncoder:\n    pass\n'
    assert modality_names_in(branch) == [(2, "audio")]
    assert modality_names_in(lookup) == [(2, "video")]
    assert modality_names_in(helper) == [(1, "image_to_tensor")]
    assert modality_names_in(constant) == [(1, "VIDEO_FPS")]
    assert modality_names_in(prose) == []
    assert modality_names_in(mentions) == []


def test_modality_names_are_those_the_in_repo_plugins_register(registry):
    from nextgpt.plugins import load_plugins

    assert set(MODALITY_NAMES) == set(load_plugins(allow=["image", "audio", "video", "3d"]).modalities)


def test_core_never_names_a_modality():
    found, used = [], set()
    for path in sorted(CORE.rglob("*")):
        relative = path.relative_to(CORE).as_posix()
        if any(word in MODALITY_NAMES for part in path.relative_to(CORE).parts for word in _words(Path(part).stem)):
            found.append(f"{relative}: named after a modality")
        if path.suffix != ".py":
            continue
        for line, what in modality_names_in(path.read_text()):
            key = (relative, what)
            if key in ALLOWED:
                used.add(key)
            else:
                found.append(f"{relative}:{line}: {what!r}")
    assert not found, "core names a modality (move it into the modality's plugin):\n" + "\n".join(found)
    assert used == set(ALLOWED), f"exceptions no longer needed: {sorted(set(ALLOWED) - used)}"


# -- the public API ---------------------------------------------------------------------------------


def test_import_nextgpt_is_light():
    code = "import sys, nextgpt; print(sorted(m for m in ('torch', 'transformers', 'pluggy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_imports_from_the_front_door():
    import nextgpt

    assert nextgpt.__all__ and sorted(nextgpt.__all__) == nextgpt.__all__
    assert set(nextgpt.__all__) == set(nextgpt._EXPORTS)  # every public name says where it lives
    for name in nextgpt.__all__:
        assert getattr(nextgpt, name) is not None, name
    from nextgpt import NextGPTModel
    from nextgpt.model import NextGPTModel as where_it_lives

    assert NextGPTModel is where_it_lives
    assert set(dir(nextgpt)) >= set(nextgpt.__all__)
    assert nextgpt.errors.ConfigError is nextgpt.ConfigError  # submodules resolve on access too
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        nextgpt.NoSuchName  # noqa: B018


def test_training_names_import_from_nextgpt_training():
    from nextgpt.training import NextGPTDataModule, NextGPTLightningModule
    from nextgpt.training.datamodule import NextGPTDataModule as data_module
    from nextgpt.training.module import NextGPTLightningModule as module

    assert (NextGPTLightningModule, NextGPTDataModule) == (module, data_module)


def test_python_dash_m_nextgpt_is_the_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nextgpt", "--version"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("nextgpt", run_name="__main__", alter_sys=True)
    assert exit_.value.code in (0, None)
    assert capsys.readouterr().out.startswith("nextgpt (Python ")


def documented_import_paths() -> list[tuple[str, str]]:
    """(file:line, dotted path) of every import path of this repository's packages that a
    Markdown file quotes: ``from X import a, b`` and ``import X`` lines, ``python -m X``, and
    dotted names such as `nextgpt.training.NextGPTLightningModule` in the text."""
    packages = "|".join(REPO_PACKAGES)
    dotted = re.compile(rf"(?<![\w./-])((?:{packages})(?:\.[A-Za-z_]\w*)+)")
    from_import = re.compile(rf"^\s*from\s+((?:{packages})(?:\.\w+)*)\s+import\s+\(?([\w\s,]+)\)?", re.M)
    plain_import = re.compile(rf"^\s*import\s+((?:{packages})(?:\.\w+)*)\s*$", re.M)
    files = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in files.stdout.split():
        text = (ROOT / name).read_text()

        def where(offset: int, name: str = name, text: str = text) -> str:
            return f"{name}:{text.count(chr(10), 0, offset) + 1}"

        for match in from_import.finditer(text):
            for imported in match.group(2).replace("\n", " ").split(","):
                if imported.strip():
                    found.append((where(match.start()), f"{match.group(1)}.{imported.split()[0]}"))
        for pattern in (plain_import, dotted):
            found += [(where(m.start()), m.group(1)) for m in pattern.finditer(text)]
    return found


def resolve(path: str) -> object:
    """Import the longest module prefix of ``path`` and get the rest as attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts[:cut]).startswith(exc.name):
                raise
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(path)


def test_every_documented_import_path_imports():
    quoted = documented_import_paths()
    paths = {path for _, path in quoted}
    assert {"nextgpt.model.NextGPTModel", "nextgpt.training.NextGPTLightningModule"} <= paths
    assert len(paths) >= 30
    broken = []
    for where, path in quoted:
        try:
            resolve(path)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{where}: {path} ({type(exc).__name__}: {exc})")
    assert not broken, "import paths quoted in the docs that do not import:\n" + "\n".join(broken)
