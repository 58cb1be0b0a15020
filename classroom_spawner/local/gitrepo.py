"""A real git repository of lesson files for the tests and benchmarks: committed in a
work tree, then cloned bare, so a course file can name it as ``file://...``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

#: an empty notebook, the usual content of a test lesson
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})

_IDENTITY = ["-c", "user.email=prof@uni.example.edu", "-c", "user.name=Prof"]


def git(*args: str, cwd) -> str:
    """Run git (as the lesson author) in ``cwd``; its output. Raises on failure."""
    return subprocess.run(
        ["git", *_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def lesson_repo(
    root, files: dict[str, str] | None = None, *, name: str = "lessons.git"
) -> str:
    """A bare repository ``root/name`` with one commit of ``files`` (path -> text;
    default one empty notebook, ``01-intro.ipynb``); its ``file://`` URL."""
    root = Path(root)
    work = root / (name.removesuffix(".git") + "-work")
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    for path, text in (files or {"01-intro.ipynb": NOTEBOOK}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first lesson", cwd=work)
    bare = root / name
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return bare.as_uri()
