"""`pip install nextgpt-core nextgpt-image` is enough: text -> image and image -> text with the tiny
preset, in a fresh environment that holds the two wheels and nothing else of nextgpt.

What this proves, and what it does not: the two wheels are built from this tree and installed
(``--no-deps``) into a new virtual environment. Third-party packages are not downloaded (the test
suite runs offline and in seconds): the environment sees, through a ``.pth`` file, exactly the
distributions that the two wheels' declared requirements reach (their closure, resolved against
this machine's installed versions, each checked against the required range) and no other. So
code that imports anything undeclared (an extra's package, another nextgpt plugin) fails here.
Whether the index can resolve those requirements is pip's business and is not tested here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def build_wheel(project: Path, out: Path) -> Path:
    """Build ``project``'s wheel (from a copy: setuptools builds in the source folder) into a
    folder of its own and return it."""
    target = out / project.name
    source = out / "src" / project.name
    shutil.copytree(project, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", str(target), str(source)], check=True, capture_output=True)
    (wheel,) = target.glob("*.whl")
    return wheel


def wheel_metadata(wheel: Path) -> metadata.PackageMetadata:
    import email

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))  # type: ignore[return-value]


def requirement_closure(requirements: list[str], provided: dict[str, list[str]]) -> dict[str, metadata.Distribution]:
    """Installed distributions that ``requirements`` reach (extras followed), keyed by name.
    ``provided`` maps the wheels' own names to their requirements (they are not looked up). A
    requirement that is not installed, or installed outside its range, fails the test: the
    closure would not be honest."""
    found: dict[str, metadata.Distribution] = {}
    queue: list[tuple[str, set[str]]] = [(line, set()) for line in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        line, requested_extras = queue.pop()
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in requested_extras or {""}):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name in provided:
            requires = provided[name]
        else:
            dist = metadata.distribution(requirement.name)
            assert requirement.specifier.contains(dist.version, prereleases=True), f"{line}: installed {dist.version}"
            found[name] = dist
            requires = dist.requires or []
        queue += [(r, set(requirement.extras)) for r in requires]
    return found


def link_distributions(dists: dict[str, metadata.Distribution], farm: Path) -> None:
    """Symlink every top-level file and folder of each distribution (from its RECORD) into ``farm``."""
    farm.mkdir()
    for name, dist in dists.items():
        assert dist.files is not None, f"{name}: no RECORD, cannot tell its files"
        tops = {Path(str(f)).parts[0] for f in dist.files if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = SITE_PACKAGES / top
            if source.exists() and not (farm / top).exists():
                (farm / top).symlink_to(source)


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A virtual environment with the nextgpt-core and nextgpt-image wheels and their closure."""
    base = tmp_path_factory.mktemp("fresh")
    wheels = base / "wheels"
    core = build_wheel(ROOT / "core", wheels)
    image = build_wheel(ROOT / "plugins" / "image", wheels)
    provided = {}
    for wheel in (core, image):
        meta = wheel_metadata(wheel)
        provided[canonicalize_name(meta["Name"])] = meta.get_all("Requires-Dist") or []
    closure = requirement_closure(provided["nextgpt-image"], provided)
    assert not any(n.startswith("nextgpt") for n in closure)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    link_distributions(closure, base / "closure")
    (site / "closure.pth").write_text(str(base / "closure") + "\n")
    # nothing of this process's environment may leak in (PYTHONPATH would show other sources)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "NEXTGPT_PLUGINS") and not key.startswith("PYTEST")
    }
    pip = [sys.executable, "-m", "pip", "--python", str(python), "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", str(core), str(image)], check=True, env=env)
    env.update(
        NEXTGPT_HOME=str(base / "home"),
        HF_HUB_OFFLINE="1",
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        NEXTGPT_PROGRESS="0",
    )
    return {"venv": venv, "env": env, "pip": pip, "wheels": (core, image), "closure": closure, "work": base}


def run_in(fresh_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(fresh_env["venv"] / "bin" / "nextgpt"), *args],
        cwd=fresh_env["work"],
        env=fresh_env["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_two_wheels_alone_give_text_to_image_and_image_to_text(fresh_env, tiny_model):
    check = subprocess.run([*fresh_env["pip"], "check"], capture_output=True, text=True, env=fresh_env["env"])
    assert check.returncode == 0, check.stdout + check.stderr
    for wheel in fresh_env["wheels"]:
        with zipfile.ZipFile(wheel) as archive:
            licence = [n for n in archive.namelist() if n.endswith("LICENSE")]
            assert licence and b"Apache License" in archive.read(licence[0]), wheel.name

    version = run_in(fresh_env, "--version")
    assert version.returncode == 0, version.stderr
    assert "nextgpt-core 0.1.0" in version.stdout and "nextgpt-image 0.1.0  plugins: image" in version.stdout
    assert "nextgpt-audio" not in version.stdout

    to_image = run_in(fresh_env, "chat", "--model", "tiny", "-p", "Draw a cat.", "--request", "image", "--out", "out")
    assert to_image.returncode == 0, to_image.stderr
    pictures = list((fresh_env["work"] / "out").glob("*.png"))
    assert len(pictures) == 1

    to_text = run_in(fresh_env, "chat", "--model", "tiny", "-p", "What is this?", "--image", str(pictures[0]))
    assert to_text.returncode == 0, to_text.stderr
    assert to_text.stdout.startswith("assistant:") and "[image]" not in to_text.stdout

    # training is an extra: one line naming the command that installs it, no traceback
    fit = run_in(fresh_env, "fit", "--config", str(ROOT / "examples" / "configs" / "tiny_stage1.yaml"))
    assert fit.returncode == 1
    assert fit.stderr.strip().splitlines() == [
        "error: nextgpt fit needs the 'train' extra (missing: lightning, torchmetrics, jsonargparse); "
        'install it with: pip install "nextgpt-core[train]"'
    ]

    # a folder saved where audio and video are installed loads where they are not
    tiny_model.save_pretrained(fresh_env["work"] / "saved")
    saved = run_in(fresh_env, "chat", "--model", "saved", "-p", "Draw a cat.", "--request", "image", "--out", "out2")
    assert saved.returncode == 0, saved.stderr
    assert "warning: " in saved.stderr and "modality 'audio', 'video' skipped" in saved.stderr
    assert len(list((fresh_env["work"] / "out2").glob("*.png"))) == 1
