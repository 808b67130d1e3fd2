"""The exported-encoder folder, as ``export ENCODER --out DIR`` writes it and
``--method checkpoint --checkpoint DIR`` / ``benchmark.load_encoder(DIR)`` read it:
laid out like a Hugging Face Hub model repository, so it can be uploaded as it is
(``huggingface-cli upload``) and downloaded with ``snapshot_download``.

    DIR/config.json        what rebuilds the encoder: backbone spec, image size,
                           normalisation, the method that trained it
    DIR/model.safetensors  the image encoder's state dict (the project's key names)
    DIR/README.md          the model card: provenance, and whether the weights are phantom

Reading is strict: a folder whose config is not this format's, or whose weights
do not read, is one line naming what is wrong; the weights then load strictly
into the backbone the config names (``methods.baselines``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmark.errors import UserError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
FORMAT = "medvlp-bench-encoder"
FORMAT_VERSION = 1


def is_export(path: Path) -> bool:
    """Whether ``path`` is a folder in this layout (it has a ``config.json``)."""
    return path.is_dir() and (path / CONFIG).is_file()


def read_config(folder: Path) -> dict:
    """``folder/config.json``, checked to be this format's and to name a backbone."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder / CONFIG} does not read as JSON ({type(exc).__name__}); export the encoder again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{folder / CONFIG} is not an exported medvlp-bench encoder (no \"format\": \"{FORMAT}\")")
    if not isinstance(config.get("format_version"), int) or config["format_version"] > FORMAT_VERSION:
        raise UserError(f"{folder} was exported by a newer medvlp-bench (format version "
                        f"{config.get('format_version')!r}, this one reads {FORMAT_VERSION}): upgrade medvlp-bench")
    if not config.get("backbone"):
        raise UserError(f"{folder / CONFIG} names no backbone")
    return config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (the format holds tensors only: nothing in it runs)."""
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as exc:  # safetensors' own error type: a bad header, a short file
        reason = (str(exc) or "empty").splitlines()[0][:120]
        raise UserError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {reason})") from None
    if not state:
        raise UserError(f"{path} holds no tensors")
    return state


def check_folder(folder: Path) -> dict:
    """An exported folder's config, checked, once its weights file is known to be there."""
    config = read_config(folder)
    if not (folder / WEIGHTS).is_file():
        raise UserError(f"{folder} has a {CONFIG} but no {WEIGHTS}")
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict from an exported folder (its config checked first)."""
    check_folder(folder)
    return read_safetensors(folder / WEIGHTS)
