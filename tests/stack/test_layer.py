"""The shared layer is built from the lock: layers/shared/requirements.txt is `uv export` of uv.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    assert os.access(found, os.X_OK), "uv is needed (make setup installs it)"
    return found


def test_layer_requirements_are_the_locked_runtime_closure():
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--no-dev", "--no-hashes"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    written = (ROOT / "layers" / "shared" / "requirements.txt").read_text(encoding="utf-8")
    assert written == exported, "layers/shared/requirements.txt is stale: run `make requirements`"


def test_the_layer_ships_phonenumbers_without_its_geodata():
    pins = (ROOT / "layers" / "shared" / "requirements.txt").read_text(encoding="utf-8").split()
    names = {line.split("==")[0] for line in pins if "==" in line}
    assert "phonenumberslite" in names
    assert "phonenumbers" not in names
