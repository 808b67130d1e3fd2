"""``cache list`` / ``cache prune`` (issue 27): what BENCHMARK_HOME holds, which stored trials use
each encoder, and a prune that removes only what no stored trial refers to (dry run first)."""

from __future__ import annotations

import json

from benchmark.cli import main


def _run(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cache_list_and_prune_keep_what_the_store_uses(capsys, isolated_home):
    home = isolated_home / "home"
    used = _run(capsys, "run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5")
    kept = f"random-{used['config_hash']}"
    spare = _run(capsys, "pretrain", "--method", "random", "--profile", "smoke", "--set", "seed=5")
    dropped = f"random-{spare['config_hash']}"
    (home / "features" / "gone-000000000000").mkdir(parents=True)  # features whose encoder is gone
    (home / "features" / "gone-000000000000" / "x.pt").write_bytes(b"0" * 1000)

    listed = _run(capsys, "cache", "list")
    rows = {e["name"]: e for e in listed["encoders"]}
    assert rows[kept]["trials"] == 1 and rows[dropped]["trials"] == 0 and rows[kept]["bytes"] > 0
    assert listed["stores"] == [str(isolated_home / "store.sqlite")]
    assert main(["cache", "list"]) == 0
    text = capsys.readouterr().out
    assert kept in text and "1 used by no stored trial" in text

    dry = _run(capsys, "cache", "prune", "--dry-run")
    assert sorted(dry["removed"]) == [f"encoders/{dropped}", "features/gone-000000000000"] and dry["dry_run"]
    assert (home / "encoders" / dropped).is_dir()  # a dry run removes nothing
    done = _run(capsys, "cache", "prune")
    assert sorted(done["removed"]) == sorted(dry["removed"]) and done["freed_bytes"] == dry["freed_bytes"] > 0
    assert not (home / "encoders" / dropped).exists() and (home / "encoders" / kept).is_dir()
    assert not (home / "features" / "gone-000000000000").exists()
    assert _run(capsys, "cache", "prune", "--dry-run")["removed"] == []


def test_an_encoder_of_a_method_without_a_text_tower_stores_no_model_file(isolated_home):
    """model.safetensors (the whole method: heads and text projection) is what zero-shot and retrieval
    load; a method with no joint space never needs it, so it is not written (half a smoke encoder's bytes)."""
    import benchmark

    random = benchmark.pretrain("random", profile="smoke").path.parent
    imitate = benchmark.pretrain("imitate", profile="smoke").path.parent
    assert not (random / "model.safetensors").exists() and (random / "encoder.safetensors").is_file()
    assert (imitate / "model.safetensors").is_file()
    again = benchmark.pretrain("random", profile="smoke")  # the folder reads as finished without it
    assert again.reused
