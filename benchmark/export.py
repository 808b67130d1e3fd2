"""``export ENCODER --out DIR``: a cached encoder as a Hub-style folder
(``benchmark.hubfolder``: config.json, model.safetensors, a README.md model card
with the provenance its ``meta.json`` keeps), which ``--method checkpoint
--checkpoint DIR`` and ``benchmark.load_encoder(DIR)`` read back strictly.

ENCODER is a folder of the encoder cache (``$BENCHMARK_HOME/encoders/<method>-<hash>``,
as ``pretrain`` prints it) or its name. The folder is written beside ``DIR`` under a
temporary name and renamed into place, so ``DIR`` is never half written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmark.data.transforms import HALF
from benchmark.errors import UserError
from benchmark.hubfolder import CARD, CONFIG, FORMAT, FORMAT_VERSION, WEIGHTS
from benchmark.paths import atomic_safetensors_save, home_path
from benchmark.pretraining import META, Pretrained, finished_encoder
from benchmark.registry import METHODS
from benchmark.version import __version__


def find_encoder(name: str | Path) -> Path:
    """The cache folder ``name`` names: a path to one, or a folder name under the encoder cache."""
    given = Path(name).expanduser()
    cache = home_path() / "encoders"
    for folder in (given, cache / str(name)):
        if folder.is_dir() and (folder / META).is_file():
            return folder
    if given.is_dir():
        raise UserError(f"{given} is not a finished encoder folder (no {META}): give one that pretrain printed")
    known = sorted(p.name for p in cache.glob("*-*") if (p / META).is_file())[:8] if cache.is_dir() else []
    listed = f" (cached: {', '.join(known)})" if known else ""
    raise UserError(f"no encoder {str(name)!r}: give an encoder folder under {cache}, by name or path{listed}")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: give a new or empty folder (nothing was overwritten)")


def encoder_config(pre: Pretrained) -> dict:
    """config.json: what rebuilds the encoder and feeds it like the benchmark does."""
    import benchmark.methods  # noqa: F401  (registers the methods: their input statistics)

    meta, cfg = pre.meta, pre.meta.get("config", {})
    stats = METHODS.get(meta["method"]).image_stats if meta["method"] in METHODS.names() else None
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "library": "medvlp-bench",
        "backbone": pre.arch or cfg.get("backbone", "resnet50"), "backbone_weights_init": cfg.get("backbone_weights"),
        "image_size": cfg.get("image_size"), "in_channels": 3,
        "normalisation": {
            "pretraining": None if stats is None else {"mean": list(stats[0]), "std": list(stats[1])},
            "downstream": {"mean": list(HALF[0]), "std": list(HALF[1])},  # the mgca protocol's evaluation input
        },
        "method": meta["method"], "config_hash": meta.get("config_hash"), "encoder": pre.path.parent.name,
    }


def _phantom(source: str) -> bool:
    return source.startswith("phantom")


def model_card(pre: Pretrained, config: dict) -> str:
    """README.md: the provenance ``meta.json`` keeps, and what the weights are worth."""
    meta = pre.meta
    corpus = meta.get("corpus", {})
    source = str(corpus.get("source", "unknown"))
    if _phantom(source):
        warning = ("> **Phantom weights.** This encoder was pre-trained on medvlp-bench's *phantom* corpus: "
                   "procedurally rendered chest radiographs paired with Open-i report text. They exercise the "
                   "pipeline and mean nothing for real images; do not report numbers from them as real-data results.")
    elif source == "none":
        warning = f"> Not pre-trained here: the `{meta['method']}` baseline's encoder (random or imported weights)."
    else:
        warning = f"> Pre-trained on real data ({source})."
    tags = ["medvlp-bench", "chest-x-ray", "image-feature-extraction", meta["method"]] + (["phantom"] if _phantom(source) else [])
    rows = [
        ("method", f"`{meta['method']}`"), ("backbone", f"`{json.dumps(config['backbone'])}`"),
        ("method config hash", f"`{meta.get('config_hash', '-')}`"),
        ("corpus", f"{source}, {corpus.get('pairs', '-')} pairs, fingerprint `{corpus.get('fingerprint', '-')}`"),
        ("steps", meta.get("steps", "-")), ("seconds", meta.get("seconds", "-")), ("device", meta.get("device", "-")),
        ("final loss", meta.get("final_loss", "-")), ("git revision", f"`{meta.get('git_rev') or 'unknown'}`"),
        ("medvlp-bench version", meta.get("version", "-")), ("trained", meta.get("created") or "unknown"),
        ("exported by", f"medvlp-bench {__version__}"),
    ]
    return "\n".join([
        "---", "library_name: medvlp-bench", "tags:", *(f"- {t}" for t in tags), "---", "",
        f"# {meta['method']} image encoder ({pre.path.parent.name})", "", warning, "",
        "The image encoder transferred by medvlp-bench's downstream tasks: the backbone named in "
        f"`{CONFIG}`, its weights in `{WEIGHTS}` (key names as the backbone's own state dict).", "",
        "## Load it", "", "```python", "import benchmark",
        "encoder = benchmark.load_encoder(\"PATH/TO/THIS/FOLDER\")  # images (N x 3 x S x S) -> pooled features",
        "```", "", "```", "python -m benchmark run --method checkpoint --checkpoint PATH/TO/THIS/FOLDER --task rsna_cls",
        "```", "",
        "## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
        "## Method config", "", "```json", json.dumps(meta.get("config", {}), indent=1, sort_keys=True), "```", "",
    ])


def export_encoder(name: str | Path, out: str | Path) -> Path:
    """Write the encoder ``name`` to the new folder ``out``; returns ``out``."""
    folder, out = find_encoder(name), Path(out).expanduser()
    _check_out(out)
    pre = finished_encoder(folder)
    if pre is None:  # damaged: finished_encoder said why in one warning and marked it unfinished
        raise UserError(f"the encoder in {folder} is damaged: pre-train it again (pretrain --force), then export")
    config = encoder_config(pre)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        atomic_safetensors_save(pre.weights(), tmp / WEIGHTS, {"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        (tmp / CARD).write_text(model_card(pre, config), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.is_dir():
            out.rmdir()  # empty (checked): the rename needs the name free
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
