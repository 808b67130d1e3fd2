"""The data every task and method consumes, whatever it came from.

Why: a task must not care whether its images were decoded from the official
downloads (``benchmark.data.real``) or rendered by the phantom
(``benchmark.data.phantom``); both return these containers, and data set modules
(``benchmark.data.sets``) build them. Owned by neither side, so neither imports
the other for its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The five competition findings of the zero-shot "5x200" sets, in label order.
FIVE_FINDINGS = ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion")
#: The 14 observations of the Stanford labeler, in file order: the label columns of two
#: downloads (the chest radiograph competition's tables and the MIMIC-CXR-JPG label table).
LABELER_OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                        "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                        "Pleural Other", "Fracture", "Support Devices")
#: Their five competition findings, as the label files spell them (``FIVE_FINDINGS`` order).
COMPETITION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


@dataclass
class PairCorpus:
    """Image-report pairs (pre-training).  images: (N, H, W) uint8, usually a read-only memmap."""

    ids: list[str]
    images: np.ndarray
    findings: list[str]
    impressions: list[str]
    source: str = "phantom"
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:
        """A memory-mapped image cache travels to DDP workers as its path, not its bytes."""
        state = dict(self.__dict__)
        images = self.images
        if isinstance(images, np.memmap) and images.filename and images.flags.c_contiguous and len(images):
            ref = ("memmap", str(images.filename), images.dtype.str, images.shape, images.offset)
            again = open_memmap(ref)
            if np.array_equal(again[0], images[0]) and np.array_equal(again[-1], images[-1]):  # not a shifted view
                state["images"] = ref
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], tuple):
            state["images"] = open_memmap(state["images"])
        self.__dict__.update(state)


def open_memmap(ref: tuple) -> np.memmap:
    """The memmap a pickled :class:`PairCorpus` names: ("memmap", path, dtype, shape, offset)."""
    _, path, dtype, shape, offset = ref
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=tuple(shape), offset=offset)


@dataclass
class LesionSet:
    """Detection / segmentation set.

    images, masks: (N, H, W) uint8 (masks are 0/1); boxes[i]: (k, 4) float32
    x, y, w, h in pixels; labels: (N,) int64, 1 = has a lesion.
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    labels: np.ndarray
    source: str = "phantom"
    fingerprint: str = ""
    #: boxes repaired while loading (real data): {"clipped": n, "dropped": n, "first": id}; {} if none
    repairs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class LabelSet:
    """Classification set.  images: (N, H, W) uint8 memmap; labels: (N,) int64 (binary /
    multi-class) or (N, K) int64 0/1 (multi-label); classes: the label names."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = field(default_factory=tuple)
    source: str = "phantom"
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TextLabelSet:
    """Single-label images with their report text (zero-shot, retrieval): labels (N,) index into ``classes``."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    texts: list[str]
    classes: tuple[str, ...] = FIVE_FINDINGS
    source: str = "phantom"
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TestLabels:
    """A test split's labels without its images: what trivial references are computed from
    (``tasks.references``), whether the split was loaded or only its label files were read.
    labels: (N,) or (N, K), None where the data set's table has no single label column;
    lesion_share: (N,) the share of each image's pixels inside its lesion mask (lesion sets)."""

    ids: list[str]
    labels: np.ndarray | None
    lesion_share: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def positives(self) -> "TestLabels":
        """The images with a lesion (a positive label), as ``test_subset: positive`` scores them."""
        keep = np.asarray(self.labels).reshape(len(self.ids), -1).max(1) > 0
        return TestLabels([i for i, k in zip(self.ids, keep) if k], np.asarray(self.labels)[keep],
                          None if self.lesion_share is None else np.asarray(self.lesion_share)[keep])
