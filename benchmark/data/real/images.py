"""Decoding the official image files once into a uint8 memory-mapped cache.

Why: decoding 1024-3000 px DICOMs and JPEGs every epoch dominates a run.
Each split's images are decoded once (DICOM: modality and VOI LUT applied,
MONOCHROME1 inverted; JPG/PNG via PIL), resized so the longest side is
``size`` and zero-padded (centred) to ``size x size`` (the mgca protocol's
resize-pad), and stored as ``.npy`` files under
``$BENCHMARK_HOME/real/<data set>/`` that later runs memory-map. Files are
written under a temporary name and renamed; the JSON sidecar is written last,
so its presence marks a complete entry, and it records each array's shape and a
checksum over a sample of rows (``benchmark.data.integrity``): an entry found
truncated or altered is reported in one warning line and decoded again. Images
that cannot be read are never skipped silently: a few are dropped with a warning
naming them, more are an error naming the first file.

An entry is keyed on content, not on where the data root is: the ids, each
file's path inside the data set's folder (and that folder's name), the sizes of
a sample of the files, the size, and, for masks, the label files' fingerprint
(``mask_tag``). A copy of the downloads under another root reuses the cache; a
changed label file draws new masks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data import integrity
from benchmark.errors import UserError
from benchmark.paths import atomic_json, atomic_memmaps, cache_dir
from benchmark.progress import Progress

log = logging.getLogger(__name__)

#: Bump when decoding or resizing changes: part of every cache key and fingerprint.
PREP_VERSION = "resize-pad-2"
#: Most unreadable images dropped with a warning (or 1 % of a split, if more); beyond: an error.
MAX_BAD = 5


@dataclass(frozen=True)
class Geometry:
    """How an original image (``height`` x ``width``) maps into the stored square:
    x' = x * scale + left."""

    scale: float
    left: int
    top: int
    height: int = 0
    width: int = 0

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """x, y, w, h boxes in original pixels (already clipped to the image) -> stored pixels."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        b[:, :] *= self.scale
        b[:, 0] += self.left
        b[:, 1] += self.top
        return b


def decode(path: Path) -> np.ndarray:
    """An image file -> (H, W) uint8, full dynamic range, white = dense."""
    if path.suffix.lower() == ".dcm":
        return _decode_dicom(path)
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _to_uint8(np.asarray(img, dtype=np.float64))
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def image_shape(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file's header only (no decoding); None if unreadable."""
    try:
        if path.suffix.lower() == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
            return int(ds.Rows), int(ds.Columns)
        from PIL import Image

        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the image checks, not here
        return None


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if arr.ndim == 3:  # a colour or multi-frame file: first frame / luminance
        arr = arr.mean(axis=-1) if arr.shape[-1] in (3, 4) else arr[0]
    arr = apply_voi_lut(apply_modality_lut(arr, ds), ds).astype(np.float64)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = arr.max() - arr
    return _to_uint8(arr)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def resize_pad(img: np.ndarray, size: int, nearest: bool = False) -> tuple[np.ndarray, Geometry]:
    """Longest side -> ``size`` (bilinear, or nearest for masks), then centred zero padding."""
    from PIL import Image

    h, w = img.shape
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(img).resize((nw, nh), Image.NEAREST if nearest else Image.BILINEAR))
    out = np.zeros((size, size), np.uint8)
    left, top = (size - nw) // 2, (size - nh) // 2
    out[top:top + nh, left:left + nw] = resized
    return out, Geometry(scale, left, top, h, w)


@dataclass
class Stack:
    """A decoded split: the readable ids in order, their images (and masks) as memmaps,
    each one's geometry, and the ids that could not be read."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    geometry: list[Geometry]
    bad: list[str]
    key: str


MaskFn = Callable[[int, tuple[int, int]], np.ndarray]


def content_key(ids: Sequence[str], paths: Sequence[Path], base: Path, size: int, mask_tag: str) -> str:
    """The cache key: what the images are, not where the data root is (see the module docstring)."""
    def rel(p: Path) -> str:
        try:
            return Path(p).relative_to(base).as_posix()
        except ValueError:
            return str(p)

    sizes = []
    for k in integrity.sample_rows(len(paths)):
        try:
            sizes.append(Path(paths[k]).stat().st_size)
        except OSError:
            sizes.append(-1)
    listing = "\n".join(f"{i}\t{rel(p)}" for i, p in zip(ids, paths))
    text = f"{PREP_VERSION}|{size}|{mask_tag}|{Path(base).name}|{sizes}|{listing}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_stack(name: str, ids: Sequence[str], paths: Sequence[Path], size: int, base: Path,
                 mask: MaskFn | None = None, mask_tag: str = "") -> Stack:
    """The images of ``paths`` (ids in the same order; ``base``: the data set's folder) at
    ``size``, decoded once.

    ``mask(i, (h, w))`` gives image i's 0/1 mask in original pixels (same geometry
    applied, nearest neighbour); ``mask_tag`` names what it draws and from which label
    content (cache key)."""
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 4096:
        raise UserError(f"image size must be an integer in [16, 4096], got {size!r}")
    key = content_key(ids, paths, base, size, mask_tag)
    folder = cache_dir("real", name)
    stem = folder / f"{name}-{size}px-{len(ids)}-{key}"
    img_path, mask_path, meta_path = (Path(f"{stem}.images.npy"), Path(f"{stem}.masks.npy"), Path(f"{stem}.json"))
    arrays = [img_path] + ([mask_path] if mask else [])

    def rows(meta: dict) -> int:
        if len(meta["geometry"]) != len(meta["ids"]) or any(len(g) != 5 for g in meta["geometry"]):
            raise KeyError("geometry")
        return len(meta["ids"])

    entry = integrity.cached_entry(log, f"{name} image", meta_path, arrays, lambda m: (rows(m), size, size),
                                   ("ids", "geometry", "bad"), (False, True))
    if entry is None:
        _build(list(ids), list(paths), size, mask, img_path, mask_path if mask else None, meta_path, name)
        entry = (integrity.read_sidecar(meta_path), [np.load(p, mmap_mode="r") for p in arrays])
    meta, loaded = entry
    if meta["bad"]:
        log.warning("%s: %d unreadable image(s) left out: %s", name, len(meta["bad"]),
                    ", ".join(b["id"] for b in meta["bad"][:10]) + (" ..." if len(meta["bad"]) > 10 else ""))
    return Stack(
        ids=meta["ids"], images=loaded[0], masks=loaded[1] if mask else None,
        geometry=[Geometry(*g) for g in meta["geometry"]], bad=[b["id"] for b in meta["bad"]], key=key,
    )


def _build(ids: list[str], paths: list[Path], size: int, mask: MaskFn | None, img_path: Path,
           mask_path: Path | None, meta_path: Path, name: str) -> None:
    n = len(ids)
    outs = [p for p in (img_path, mask_path) if p is not None]
    geometry: list[list[float] | None] = [None] * n
    bad: list[dict] = []

    def work(i: int) -> tuple[int, tuple | str]:
        try:
            img = decode(paths[i])
        except FileNotFoundError:
            return i, "file not found"
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file, reported below
            return i, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        out, geo = resize_pad(img, size)
        m = None
        if mask is not None:
            m, _ = resize_pad(np.asarray(mask(i, img.shape), np.uint8), size, nearest=True)
        return i, (out, geo, m)

    workers = max(1, min(8, os.cpu_count() or 1))
    with (atomic_memmaps(outs, (n, size, size)) as arrays,
          Progress(total=n, desc=f"decoding {name} {size}px", unit="img") as bar,
          ThreadPoolExecutor(workers) as pool):
        for i, result in pool.map(work, range(n)):
            if isinstance(result, str):
                bad.append({"id": ids[i], "path": str(paths[i]), "error": result})
            else:
                out, geo, m = result
                arrays[0][i] = out
                if m is not None:
                    arrays[1][i] = m
                geometry[i] = [geo.scale, geo.left, geo.top, geo.height, geo.width]
            bar.update()
        limit = max(MAX_BAD, n // 100)
        if len(bad) > limit or len(bad) == n:
            first = bad[0]
            raise UserError(f"{len(bad)} of {n} {name} images cannot be read (first: {first['path']}: {first['error']}); "
                            "expected the official image files in the layout of docs/DATA.md")
    good = [i for i in range(n) if geometry[i] is not None]
    if bad:  # keep only the readable rows (the sidecar below is what marks the entry complete)
        full = [np.load(p, mmap_mode="r") for p in outs]
        with atomic_memmaps(outs, (len(good), size, size)) as arrays:
            for arr, src in zip(arrays, full):
                arr[:] = src[good]
        del full
    atomic_json(meta_path, {"version": PREP_VERSION, "size": size, "ids": [ids[i] for i in good],
                            "geometry": [geometry[i] for i in good], "bad": bad,
                            integrity.KEY: integrity.records(outs)})
