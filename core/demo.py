"""The built-in demo project: synthetic shapes with exact polygon labels, made on first use.

Why synthetic: no download, identical on every machine (seeded), small enough that a
CPU trains a small model on it in minutes, and the labels are exact by construction
(a shape partly hidden by a later one is labelled with its *visible* region, which
exercises multi-part polygons and holes). Images are named ``batchNN_IIII.jpg`` and
the demo sets ``split.group_by: pattern`` so the split keeps each batch together.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union

from core.annotation import ImageAnnotation, Instance
from core.errors import UserFacingError

CLASSES = ["circle", "triangle", "rectangle"]
N_IMAGES = 64
PER_BATCH = 4
WIDTH, HEIGHT = 320, 240
SEED = 20240611
VERSION = "2"
MARKER = Path(".dfine") / "demo_complete"
# Training from random weights on a CPU: a 4x higher lr than the (pretrained) template default,
# small batches for more steps, and no heavy augmentation, which slows the first few hundred steps.
# The EMA follows the weights within ~100 steps: the template's 0.9999 suits 100k-step runs.
# "Train for 15 minutes" (train.time_budget_min): the run plans its epochs from its measured speed
# (about the 60 epochs below on a 2-core AVX512-BF16 CPU; fewer on a slower one), and `epochs` is
# what `--set train.time_budget_min=null` trains instead.
TEMPLATE_TRAIN = {"time_budget_min": "null", "epochs": "50", "batch_size": "8", "lr": "2.5e-4", "no_aug_epochs": "null", "val_every": "1",
                  "ema_decay": "0.9999", "ema_warmups": "2000"}
DEMO_TRAIN = {"time_budget_min": "15", "epochs": "60", "batch_size": "4", "lr": "1.0e-3", "no_aug_epochs": "60", "val_every": "5",
              "ema_decay": "0.99", "ema_warmups": "20"}
DEFAULT_DIR = Path("demo_project")
MAX_OCCLUSION = 0.5  # a new shape may hide at most half of an earlier one
SUPERSAMPLE = 8  # anti-aliasing: edge pixels get their exact covered fraction
MIN_PART_AREA = 2.0  # px^2; slivers from polygon differences below this are noise


def make_demo_project(root: Path | str = DEFAULT_DIR) -> Path:
    """Create the demo project at ``root`` (or reuse it if already complete) and return its path."""
    from core.project import Project

    root = Path(root)
    if (root / MARKER).exists():
        return root
    if root.exists() and any(root.iterdir()):
        raise UserFacingError(f"{root}: exists, is not empty and is not a complete demo project")
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    proj = Project.create(tmp, CLASSES, "segment")
    text = proj.config_path.read_text(encoding="utf-8")
    text = text.replace("  group_by: none\n", "  group_by: pattern\n", 1)
    text = text.replace("  image_size: 640\n", "  image_size: 256\n", 1)
    text = text.replace("  size: s\n", "  size: n\n", 1)
    for key, value in DEMO_TRAIN.items():  # a recipe measured to learn from scratch on a CPU
        line = f"  {key}: {TEMPLATE_TRAIN[key]}\n"
        if line not in text:  # the template changed: fail here, not with a silently different demo
            raise AssertionError(f"projects_template/project.yaml has no line {line!r}")
        text = text.replace(line, f"  {key}: {value}  # demo recipe\n", 1)
    proj.config_path.write_text(text, encoding="utf-8")
    proj.reload_config()
    for i in range(N_IMAGES):
        img, instances = render_demo_image(i)
        name = f"batch{i // PER_BATCH:02d}_{i % PER_BATCH:04d}.jpg"
        path = proj.image_dir / name
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:  # pragma: no cover - cv2 always encodes a uint8 BGR image
            raise RuntimeError("JPEG encoding failed")
        path.write_bytes(buf.tobytes())
        proj.save_annotation(ImageAnnotation(path, WIDTH, HEIGHT, instances))
    proj.write_splits()
    (tmp / MARKER).parent.mkdir(exist_ok=True)
    (tmp / MARKER).write_text(VERSION, encoding="utf-8")
    if root.exists():
        root.rmdir()  # empty (checked above)
    os.replace(tmp, root)
    return root


# ------------------------------------------------------------------------ rendering


def _background(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour field + grain.

    Deliberately plain: the demo exists to show the whole loop (label, train, review, export,
    live) in CPU minutes from random weights. With strong stripe/checker textures a size-N
    model from scratch learned about half as fast (val mask mAP50 0.04 vs 0.08 after 220 steps
    at 256 px) and had no confident detections within a 10-minute run."""
    low = rng.uniform(60, 200, size=(rng.integers(2, 4), rng.integers(2, 4), 3)).astype(np.float32)
    bg = cv2.resize(low, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    bg += np.asarray(rng.normal(0, 6, size=bg.shape), np.float32)
    return bg


def _shape(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Polygon (N, 2) in pixel coordinates for a class."""
    r = float(rng.uniform(14, 60))
    cx, cy = float(rng.uniform(0.1, 0.9) * WIDTH), float(rng.uniform(0.12, 0.88) * HEIGHT)
    rot = float(rng.uniform(0, 2 * np.pi))
    if cls == 0:  # circle (an ellipse, slightly squashed)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r * rng.uniform(0.8, 1.0)], 1)
    elif cls == 1:  # triangle, irregular
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    else:  # rectangle with aspect ratio 0.45..1
        a = r * rng.uniform(0.45, 1.0)
        pts = np.array([[-r, -a], [r, -a], [r, a], [-r, a]], dtype=np.float64)
    c, s = np.cos(rot), np.sin(rot)
    return pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def _fill(img: np.ndarray, poly: np.ndarray, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a polygon with a textured colour, anti-aliased by its exact pixel coverage.

    Coverage comes from an 8x supersampled fill: sub-pixel u covers [u/8, (u+1)/8), its
    centre is at OpenCV coordinate x*8 - 0.5; shift=4 keeps 1/16 sub-pixel precision.
    Returns the pixels at least half covered - the region the label polygon describes."""
    s = SUPERSAMPLE
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 1, [WIDTH, HEIGHT])
    h, w = y1 - y0, x1 - x0
    hi = np.zeros((h * s, w * s), np.uint8)
    pts = np.round(((poly - [x0, y0]) * s - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(hi, [pts], 1, lineType=cv2.LINE_8, shift=4)
    cov = hi.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float32)[..., None]
    shade = rng.normal(0, 10, size=(h, w, 1)).astype(np.float32)
    crop = img[y0:y1, x0:x1]
    crop *= 1.0 - cov
    crop += cov * (color[None, None, :] + shade)
    mask = np.zeros(img.shape[:2], bool)
    mask[y0:y1, x0:x1] = cov[..., 0] >= 0.5
    return mask


def _to_instance(cls: int, geom) -> Instance | None:
    parts = [geom] if isinstance(geom, Polygon) else list(getattr(geom, "geoms", []))
    polys, holes = [], []
    for g in parts:
        if not isinstance(g, Polygon) or g.area < MIN_PART_AREA:
            continue
        polys.append(np.asarray(g.exterior.coords)[:-1])
        holes += [np.asarray(h.coords)[:-1] for h in g.interiors if Polygon(h).area >= MIN_PART_AREA]
    if not polys:
        return None
    return Instance(class_id=cls, polygons=polys, holes=holes)


def render_demo_image(index: int, id_map: np.ndarray | None = None) -> tuple[np.ndarray, list[Instance]]:
    """Image ``index`` of the demo (BGR uint8) and its exact labels; deterministic.

    ``id_map`` (HxW int array, optional) receives, per pixel, 1 + the index of the shape
    painted last there (0 = background), for tests that check labels against pixels."""
    rng = np.random.default_rng([SEED, index])
    img = _background(rng)
    frame = shapely_box(0, 0, WIDTH, HEIGHT)
    shapes: list[tuple[int, Polygon]] = []
    n = int(rng.integers(2, 6))
    tries = 0
    while len(shapes) < n and tries < 60:
        tries += 1
        cls = int(rng.integers(0, len(CLASSES)))
        poly = Polygon(_shape(cls, rng)).intersection(frame)
        if not isinstance(poly, Polygon) or poly.area < 150:
            continue
        # visible area of every earlier shape must stay >= (1 - MAX_OCCLUSION) of its own
        ok = True
        for _, prev in shapes:
            vis_before = prev.difference(unary_union([p for _, p in shapes if p is not prev]
                                                     + [poly]))
            if vis_before.area < (1 - MAX_OCCLUSION) * prev.area:
                ok = False
                break
        if ok:
            shapes.append((cls, poly))
    instances = []
    for k, (_cls, poly) in enumerate(shapes):
        color = rng.uniform(20, 235, size=3).astype(np.float32)
        m = _fill(img, np.asarray(poly.exterior.coords)[:-1], color, rng)
        if id_map is not None:
            id_map[m] = k + 1
    for k, (cls, poly) in enumerate(shapes):
        later = [p for _, p in shapes[k + 1 :]]
        visible = poly.difference(unary_union(later)) if later else poly
        inst = _to_instance(cls, visible)
        if inst is None:  # cannot happen with MAX_OCCLUSION < 1; kept as a guard
            raise AssertionError(f"demo image {index}: shape {k} fully hidden")
        instances.append(inst)
    return np.clip(img, 0, 255).astype(np.uint8), instances


# ------------------------------------------------------------------------ CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR,
                   help=f"where to create the demo project (default: ./{DEFAULT_DIR})")


def run(args: argparse.Namespace) -> int:
    existed = (Path(args.dir) / MARKER).exists()
    root = make_demo_project(args.dir)
    from core.project import Project

    proj = Project.open(root)
    n = len(proj.image_paths())
    print(f"{'using' if existed else 'created'} demo project {root} ({n} images, classes: "
          f"{', '.join(proj.class_names)})")
    return 0
