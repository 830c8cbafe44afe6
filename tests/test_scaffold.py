"""`nextgpt new-plugin` scaffolds a distribution that installs, is discovered and conforms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nextgpt.errors import ConfigError
from nextgpt.scaffold import scaffold_plugin

BIN = Path(sys.executable).parent


def test_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="'3D-scan'"):
        scaffold_plugin("3D-scan", tmp_path)
    scaffold_plugin("depth", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        scaffold_plugin("depth", tmp_path)


@pytest.mark.slow
def test_scaffolded_plugin_installs_is_listed_and_passes_the_kit(tmp_path):
    name = f"probe{os.getpid()}"
    subprocess.run([str(BIN / "nextgpt"), "new-plugin", name, "--out", str(tmp_path)], check=True, capture_output=True)
    root = tmp_path / f"nextgpt-{name}"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(root)], check=True)
    try:
        env = {**os.environ, "NEXTGPT_PLUGINS": name}
        listed = subprocess.run(
            [str(BIN / "nextgpt"), "plugins", "--json"], env=env, capture_output=True, text=True, check=True
        )
        plugin = json.loads(listed.stdout)["plugins"][0]
        assert plugin["distribution"] == f"nextgpt-{name}"
        assert plugin["modalities"][0]["signal_tokens"][0] == f"[{name.upper()}0]"
        kit = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        assert kit.returncode == 0, kit.stdout[-3000:]
        assert "18 passed" in kit.stdout
    finally:
        subprocess.run([*pip, "uninstall", "-y", f"nextgpt-{name}"], check=True)
