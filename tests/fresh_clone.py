"""A fresh copy of the repository in a temporary folder, for running what a user types there, as typed:
README commands must work from a clone, without the options the other tests add (hydra.sweep.dir=...)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_clone(dest: Path) -> Path:
    """The files a clone would have (tracked, plus new files not yet committed and not ignored), with their
    modification times (so that `make` finds the install stamp newer than pyproject.toml), and the installed
    .venv linked in: what `make install` leaves."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():  # a file deleted but not yet committed is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def shell(command: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`command` run in `cwd`, `python` being the interpreter of the tests (the project's .venv)."""
    command = [sys.executable if c == "python" else c for c in command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
