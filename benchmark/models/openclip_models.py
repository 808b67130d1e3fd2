"""open_clip models and tokenizers by name, Hugging Face Hub id or local checkpoint.

What ``model`` may be (``open_clip.create_model`` does the loading):

- an open_clip model name (``open_clip.list_models()``: ``ViT-B-16``, ``RN50`` ...), with
  ``weights`` one of its pretrained tags (``open_clip.list_pretrained_tags_by_model``, e.g.
  ``openai``, ``laion2b_s34b_b88k``: downloaded to the Hub cache on first use) or a local
  checkpoint file open_clip reads (``.pt``, ``.bin``, ``.safetensors``);
- ``hf-hub:org/name`` (e.g. ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``):
  the repository's ``open_clip_config.json`` and ``open_clip_pytorch_model.bin`` (or
  ``.safetensors``); a text tower from the Hub (BiomedCLIP's PubMedBERT) brings its own
  config and tokenizer files from that model's repository;
- a local folder holding ``open_clip_config.json`` and the weights (``local-dir:`` optional).

``weights``: ``none`` builds the architecture randomly initialised (seeded: the same
tensors every time; how tests run offline; a hub model still needs its config);
``default`` loads the hub or folder model's own weights (a model name has no default:
name a tag). Whatever is missing ends in one line: an unknown name lists the close
ones, a hub model that is not in the local cache names the command that downloads it.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.registry import unknown_name

HUB, LOCAL = "hf-hub:", "local-dir:"
NO_WEIGHTS, DEFAULT = "none", "default"
WEIGHT_FILES = (".pt", ".pth", ".bin", ".safetensors")


def resolve_name(model: str) -> str:
    """The open_clip model string for ``model``: ``hf-hub:...``, ``local-dir:/abs/folder`` or
    a built-in name; a bad one is a UserError saying what would work."""
    import open_clip

    model = model.strip()
    if model.startswith(HUB):
        if model.count("/") != 1 or not model[len(HUB):].split("/")[1]:
            raise UserError(f"model {model!r}: a hub id is hf-hub:ORG/NAME")
        return model
    folder = Path(model.removeprefix(LOCAL)).expanduser()
    pathlike = model.startswith((LOCAL, "/", ".", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model
    if pathlike or folder.exists():
        if folder.is_file():
            raise UserError(f"model {model!r} is a file: give the architecture as model and the file as weights, "
                            "e.g. --set model=ViT-B-16 --set weights=" + str(folder))
        if not folder.is_dir():
            raise UserError(f"model folder {folder} does not exist")
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"model folder {folder} holds no open_clip_config.json (an open_clip model folder has "
                            "open_clip_config.json and open_clip_pytorch_model.bin or .safetensors)")
        return LOCAL + str(folder.resolve())
    names = open_clip.list_models()
    cleaned = model.replace("/", "-")  # open_clip accepts ViT-B/16 for ViT-B-16
    if cleaned in names:
        return cleaned
    if model.count("/") == 1:
        raise UserError(f"unknown open_clip model {model!r}; a Hugging Face Hub model is named hf-hub:{model}")
    raise unknown_name("open_clip model", model, names)


def download_hint(name: str, weights: str) -> str:
    """The command that puts ``name`` (and its weights tag) into the local Hub cache."""
    if name.startswith(HUB):
        return (f"python -c \"import open_clip; open_clip.create_model_and_transforms('{name}'); "
                f"open_clip.get_tokenizer('{name}')\"")
    tag = "" if weights in (NO_WEIGHTS, DEFAULT) else f", pretrained='{weights}'"
    return f"python -c \"import open_clip; open_clip.create_model_and_transforms('{name}'{tag})\""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def hub_failure(exc: BaseException) -> str | None:
    """Why a model or tokenizer did not load when the Hub is at fault: ``missing`` (no such
    repository or file), ``gated``, ``offline`` (not in the cache and no network); None otherwise."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    if "RepositoryNotFoundError" in names:
        return "missing"
    if "GatedRepoError" in names:
        return "gated"
    for e in chain:
        module = type(e).__module__
        if module.startswith(("huggingface_hub", "requests", "urllib3", "httpx")) or "huggingface.co" in str(e):
            return "offline"
    return None


def hub_error(name: str, weights: str, exc: BaseException, why: str) -> UserError:
    what = f"{name} (weights {weights})" if not name.startswith(HUB) else name
    if why == "missing":
        return UserError(f"{what}: no such repository or file on the Hugging Face Hub; check the id")
    if why == "gated":
        return UserError(f"{what} is gated on the Hugging Face Hub: accept its terms and log in (huggingface-cli login)")
    root = _chain(exc)[-1]  # the Hub's own reason (OfflineModeIsEnabled, LocalEntryNotFoundError, ...)
    return UserError(f"{what} is not in the local Hugging Face cache and cannot be downloaded here "
                     f"({type(root).__name__}); download it once with network access (HF_HUB_OFFLINE unset): {download_hint(name, weights)}")


def check_weights(name: str, weights: str) -> str | None:
    """``pretrained`` for open_clip (a tag or a file path), None for none/default; a bad value
    is a UserError."""
    import open_clip

    weights = weights.strip()
    if weights == NO_WEIGHTS:
        return None
    own = name.startswith((HUB, LOCAL))
    if own:
        if weights != DEFAULT:
            raise UserError(f"weights {weights!r}: a hub or folder model loads its own weights (weights=default) "
                            "or none (weights=none)")
        return None
    tags = open_clip.list_pretrained_tags_by_model(name)
    if weights == DEFAULT:
        raise UserError(f"open_clip model {name} needs weights: one of its tags ({', '.join(tags) or 'none listed'}), "
                        "a checkpoint file, or none (random initialisation)")
    if weights in tags:
        return weights
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path)
    if os.sep in weights or weights.endswith(WEIGHT_FILES):
        raise UserError(f"weights file {path} " + ("is a folder, not a file" if path.is_dir() else "does not exist"))
    raise unknown_name(f"weights tag for {name} (or a checkpoint file)", weights, [*tags, NO_WEIGHTS])


@contextmanager
def quiet(level: int = logging.ERROR):
    """open_clip logs every step of a build on the root logger, and logs a failed download as an
    error before raising it (which becomes our one line): keep records up to ``level`` out."""
    before = logging.root.manager.disable
    logging.disable(max(level, before))
    try:
        yield
    finally:
        logging.disable(before)


def create_model(model: str, weights: str = NO_WEIGHTS, image_size: int = 0, seed: int = 0) -> nn.Module:
    """The open_clip model (CLIP / CustomTextCLIP) in eval mode on the CPU; ``image_size`` > 0
    forces its input size (open_clip resizes pretrained position embeddings to it)."""
    import open_clip

    name = resolve_name(model)
    pretrained = check_weights(name, weights)
    kwargs = {"force_image_size": image_size} if image_size else {}
    if weights.strip() == NO_WEIGHTS:  # nothing from the Hub but configs: no base text/image tower weights either
        kwargs.update(load_weights=False, pretrained_text=False, pretrained_image=False)
    try:
        with torch.random.fork_rng(devices=[]), quiet():
            torch.manual_seed(seed)
            # the default device: "meta" where methods.backbones.backbone_shape builds without weights
            net = open_clip.create_model(name, pretrained=pretrained, device=torch.get_default_device(), **kwargs)
    except UserError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/OSError/ValueError for all of these
        if why := hub_failure(exc):
            raise hub_error(name, weights, exc, why) from None
        if pretrained is not None and Path(pretrained).is_file() or name.startswith(LOCAL):
            first = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            raise UserError(f"cannot load open_clip model {name} with weights {weights}: {type(exc).__name__}: {first}") from None
        raise
    return net.eval()


def create_tokenizer(model: str, weights: str = NO_WEIGHTS):
    """open_clip's tokenizer for the model (CLIP BPE, or a Hub model's own)."""
    import open_clip

    name = resolve_name(model)
    try:
        with quiet():
            return open_clip.get_tokenizer(name)
    except Exception as exc:
        if why := hub_failure(exc):
            raise hub_error(name, weights, exc, why) from None
        raise
