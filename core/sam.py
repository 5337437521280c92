"""Click-to-segment with a promptable-segmentation ONNX pair (SAM family) on the CPU.

Why split like this: the image encoder is the slow half (~0.3-1 s per photo on a CPU), the prompt
decoder the fast one (tens of ms). So :meth:`SamModel.embed` runs once per image — on a worker
thread, never the GUI's — and its result is kept (``EmbeddingCache``, a few images, keyed by the
caller, e.g. the image path); every click, negative click or box then only runs
:meth:`SamModel.predict`. :func:`mask_proposal` turns the mask into editable polygons marked as a
model proposal (``source="model"``: it goes to the proposal store until a person accepts it).

Two calling contracts (core.weights.sam_registry.CONTRACTS): ``sam`` — Segment Anything's ONNX
export with the pre-processing inside the encoder (HWC float RGB, longest side resized to 1024,
prompt coordinates in that resized frame, masks at the resized size); ``efficientsam`` —
EfficientSAM's official split export (NCHW RGB in [0, 1] at the image's own size, prompts in image
pixels, masks at the image's size, several candidates ranked by predicted IoU).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.annotation import Instance
from core.errors import UserFacingError
from core.geometry import mask_to_polygons
from core.weights.sam_registry import SamEntry, sam_files, verify_sam_file

__all__ = ["EmbeddingCache", "ImageEmbedding", "SamModel", "mask_proposal"]

SAM_SIDE = 1024        # the `sam` contract's encoder works at this longest side
MAX_SIDE = 1024        # efficientsam: images are downscaled to this longest side first (speed)
POLYGON_TOLERANCE = 1.0  # px: the proposal's outline is simplified like the editor's other masks
MIN_AREA = 4.0           # px^2: specks dropped


@dataclass(frozen=True)
class ImageEmbedding:
    """What the encoder made of one image: enough for any number of prompts."""

    features: np.ndarray
    image_size: tuple[int, int]   # (height, width) of the original image
    scale: float                  # original pixels -> the frame the encoder saw
    input_size: tuple[int, int]   # (height, width) given to the encoder


class SamModel:
    """One loaded encoder + decoder pair. ``embed`` and ``predict`` may run on different threads
    (ONNX Runtime sessions are thread-safe for ``run``)."""

    def __init__(self, encoder: Path | str, decoder: Path | str, contract: str, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserFacingError("click-to-segment needs ONNX Runtime: pip install 'dfine-studio[export]'") from None
        if contract not in ("sam", "efficientsam"):
            raise UserFacingError(f"unknown promptable-segmentation contract {contract!r}")
        self.contract = contract
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self._enc = ort.InferenceSession(str(encoder), opts, providers=providers)
        self._dec = ort.InferenceSession(str(decoder), opts, providers=providers)
        self._enc_input = self._enc.get_inputs()[0].name
        self._dec_inputs = {i.name for i in self._dec.get_inputs()}

    @classmethod
    def from_cache(cls, entry: SamEntry, folder: Path, threads: int | None = None) -> SamModel:
        """The pair ``entry`` from the weights cache (``dfine weights get <name>`` puts it there);
        a missing half is an error that says how to get it."""
        paths = sam_files(entry, folder)
        missing = [p for p, f in paths.items() if not f.is_file()]
        if missing:
            raise UserFacingError(f"{entry.name}: the {' and '.join(missing)} is not in the weights cache "
                                  f"{folder}: run `dfine weights get {entry.name}`")
        for part, path in paths.items():  # cheap (graph only), and a replaced file is caught here
            verify_sam_file(path, entry, part)
        return cls(paths["encoder"], paths["decoder"], entry.contract, threads)

    # ------------------------------------------------------------------ encoder
    def embed(self, image: np.ndarray) -> ImageEmbedding:
        """Run the encoder on a BGR uint8 image (slow: call it off the GUI thread)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserFacingError(f"SAM needs a BGR uint8 image, got shape {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        side = SAM_SIDE if self.contract == "sam" else min(MAX_SIDE, max(h, w))
        scale = side / max(h, w)
        nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if (nh, nw) != (h, w):
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if self.contract == "sam":
            x = rgb.astype(np.float32)  # normalisation and padding are inside the encoder
        else:
            x = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        features = self._enc.run(None, {self._enc_input: x})[0]
        return ImageEmbedding(features, (h, w), scale, (nh, nw))

    # ------------------------------------------------------------------ decoder
    def predict(self, emb: ImageEmbedding, points: Sequence[Sequence[float]] = (),
                labels: Sequence[int] = (), box: Sequence[float] | None = None) -> tuple[np.ndarray, float]:
        """(bool mask of the original image's size, the model's predicted IoU) for positive
        (label 1) / negative (label 0) clicks (x, y) and an optional box (x0, y0, x1, y1), all in
        original image pixels."""
        if len(points) != len(labels):
            raise UserFacingError(f"{len(points)} points but {len(labels)} labels")
        if not len(points) and box is None:
            raise UserFacingError("click-to-segment needs a click or a box")
        coords = [(float(x), float(y)) for x, y in points]
        labs = [float(v) for v in labels]
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            coords += [(min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))]
            labs += [2.0, 3.0]
        pts = np.asarray(coords, np.float32).reshape(-1, 2) * np.float32(emb.scale)
        lab = np.asarray(labs, np.float32)
        if self.contract == "sam":
            if box is None:  # the exporter's convention: a padding point when there is no box
                pts = np.vstack([pts, np.zeros((1, 2), np.float32)])
                lab = np.append(lab, np.float32(-1))
            feed = {"image_embeddings": emb.features, "point_coords": pts[None], "point_labels": lab[None],
                    "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                    "has_mask_input": np.zeros(1, np.float32),
                    "orig_im_size": np.asarray(emb.input_size, np.float32)}
            masks, iou = self._dec.run(None, {k: v for k, v in feed.items() if k in self._dec_inputs})[:2]
            k = int(np.argmax(iou[0]))
            logits, score = masks[0, k], float(iou[0, k])
        else:
            feed = {"image_embeddings": emb.features, "batched_point_coords": pts[None, None],
                    "batched_point_labels": lab[None, None],
                    "orig_im_size": np.asarray(emb.input_size, np.int64)}
            masks, iou = self._dec.run(None, {k: v for k, v in feed.items() if k in self._dec_inputs})[:2]
            k = int(np.argmax(iou[0, 0]))
            logits, score = masks[0, 0, k], float(iou[0, 0, k])
        h, w = emb.image_size
        if logits.shape != (h, w):
            logits = cv2.resize(logits.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return logits > 0, score


def mask_proposal(mask: np.ndarray, class_id: int, score: float | None = None) -> Instance | None:
    """The mask as editable polygons (holes kept) marked as a model proposal; None when empty."""
    polys, holes = mask_to_polygons(mask, POLYGON_TOLERANCE, MIN_AREA)
    if not polys:
        return None
    return Instance(class_id=class_id, polygons=polys, holes=holes, source="model", score=score)


class EmbeddingCache:
    """The last ``size`` images' embeddings (LRU, thread-safe): the GUI's worker puts, clicks get."""

    def __init__(self, size: int = 4):
        self.size = max(1, size)
        self._items: OrderedDict[Hashable, ImageEmbedding] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> ImageEmbedding | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is not None:
                self._items.move_to_end(key)
            return emb

    def put(self, key: Hashable, emb: ImageEmbedding) -> None:
        with self._lock:
            self._items[key] = emb
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get_or_embed(self, key: Hashable, model: SamModel, image: np.ndarray) -> ImageEmbedding:
        """The cached embedding of ``key``, computed (on the calling thread) when missing."""
        emb = self.get(key)
        if emb is None:
            emb = model.embed(image)
            self.put(key, emb)
        return emb
