import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own caches and results store."""
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.delenv("BENCHMARK_DATA", raising=False)
    monkeypatch.delenv("BENCHMARK_CONFIG_PATH", raising=False)  # a user's own config folders
    return tmp_path
