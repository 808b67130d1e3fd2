"""Where caches and results live (environment-overridable)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


def home() -> Path:
    """Root of every cache: phantom data, text embeddings, encoders, features, splits."""
    root = Path(os.environ.get("BENCHMARK_HOME", "~/.cache/medvlp-bench")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path() -> Path:
    """The SQLite results store (relative paths are taken from the working directory)."""
    return Path(os.environ.get("BENCHMARK_STORE", "results/benchmark.sqlite")).expanduser()
