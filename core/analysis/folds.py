"""Out-of-fold predictions for the label-mistake finder: K models, each trained on K-1 folds,
each predicting the fold it never saw, so a wrong label cannot be memorised by the model that
judges it (the confident-learning / ObjectLab protocol).

Folds keep the project's groups together (``Project.group_of``: near-duplicate frames never sit
on both sides) and are stratified by class presence: groups holding the rarest classes are
placed first, each into the fold that has the fewest of its rarest class so far. The assignment
is a pure function of (images, groups, classes, K, seed) and is saved with the folds, so a
resumed or distributed run uses the same one.

Layout (``review/folds/k<K>_s<seed>_<hash of the image list>/``)::

    plan.json                  the assignment (image -> fold)
    fold_<i>/train/            the trainer's run folder (last.pt, events.jsonl)
    fold_<i>/predictions.json  the held-out fold's predictions (COCO results, RLE masks)
    fold_<i>/predictions_flip.json  the same images mirrored, boxes mapped back (agreement)
    fold_<i>/done.json         written last and atomically: only folds with it are merged

A killed fold leaves no done.json: the next run resumes its training from train/last.pt (the
trainer's exact resume) and predicts again; the other folds are reused. Nothing here writes
outside the fold folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.bounded_input import load_json_file
from core.atomic_io import atomic_write_text
from core.errors import UserFacingError

PREDICTIONS = "predictions.json"
FLIP_PREDICTIONS = "predictions_flip.json"
DONE = "done.json"
PLAN = "plan.json"
PREDICT_CONF = 0.05  # stored predictions go this low so per-class thresholds can be calibrated


def _rank_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_folds(images: Sequence[str], groups: Sequence[str | None], classes: Sequence[set[int]],
                 k: int, seed: int = 0) -> list[int]:
    """Fold (0..k-1) of each image: grouped, stratified by class presence, deterministic by seed.

    ``groups[i]`` is image i's group (None: its own group); ``classes[i]`` the classes it holds.
    Raises UserFacingError when there are fewer groups than folds."""
    if k < 2:
        raise UserFacingError(f"--folds must be at least 2, got {k}")
    units: dict[str, list[int]] = {}
    for i, (img, g) in enumerate(zip(images, groups, strict=True)):
        units.setdefault(f"group:{g}" if g is not None else f"image:{img}", []).append(i)
    if len(units) < k:
        what = f"{len(images)} images" + (f" in {len(units)} groups" if len(units) != len(images) else "")
        raise UserFacingError(f"--folds {k} needs at least {k} images (groups are kept together); "
                              f"the project has {what}: use fewer folds or label more images")
    freq: dict[int, int] = {}
    unit_classes: dict[str, set[int]] = {}
    for key, members in units.items():
        cs = set().union(*(classes[i] for i in members))
        unit_classes[key] = cs
        for c in cs:
            freq[c] = freq.get(c, 0) + 1

    def rarest(key: str) -> int | None:
        cs = unit_classes[key]
        return min(cs, key=lambda c: (freq[c], c)) if cs else None

    # rare-class units first (so each fold gets some), big units before small, then a seeded order
    def rarity(key: str) -> int:
        c = rarest(key)
        return freq[c] if c is not None else 1 << 30

    order = sorted(units, key=lambda u: (rarity(u), -len(units[u]), _rank_key(seed, u)))
    fold_images = [0] * k
    fold_class: list[dict[int, int]] = [{} for _ in range(k)]
    fold_of = [0] * len(images)
    start = int(_rank_key(seed, "start")[:8], 16) % k  # which fold the first tie goes to
    for u in order:
        rare = rarest(u)
        best = min(range(k), key=lambda f: (fold_class[f].get(rare, 0) if rare is not None else 0, fold_images[f],
                                            (f - start) % k))
        for i in units[u]:
            fold_of[i] = best
        fold_images[best] += len(units[u])
        for cc in unit_classes[u]:
            fold_class[best][cc] = fold_class[best].get(cc, 0) + 1
    return fold_of


def classes_missing_from_training(fold_of: Sequence[int], classes: Sequence[set[int]], k: int
                                  ) -> dict[int, list[int]]:
    """fold -> classes that occur in the project but in none of that fold's training images."""
    present = set().union(*classes) if classes else set()
    out: dict[int, list[int]] = {}
    for f in range(k):
        seen = set().union(*(cs for cs, g in zip(classes, fold_of) if g != f)) if classes else set()
        missing = sorted(present - seen)
        if missing:
            out[f] = missing
    return out


@dataclass
class FoldPlan:
    """The assignment plus where its outputs live."""

    root: Path  # review/folds/k<K>_s<seed>_<hash>
    k: int
    seed: int
    images: list[str]  # relative image paths (Project.rel_image), sorted
    fold_of: list[int]
    warnings: list[str] = field(default_factory=list)

    def fold_images(self, i: int) -> list[str]:
        return [img for img, f in zip(self.images, self.fold_of) if f == i]

    def train_images(self, i: int) -> list[str]:
        return [img for img, f in zip(self.images, self.fold_of) if f != i]

    def fold_dir(self, i: int) -> Path:
        return self.root / f"fold_{i}"

    def is_done(self, i: int) -> bool:
        return (self.fold_dir(i) / DONE).is_file()

    def missing_folds(self) -> list[int]:
        return [i for i in range(self.k) if not self.is_done(i)]


def make_plan(project, annotations: Sequence, k: int, seed: int = 0) -> FoldPlan:
    """The fold plan of the project's labelled images (reused from plan.json when it exists)."""
    rel = [project.rel_image(a.image_path) for a in annotations]
    order = sorted(range(len(rel)), key=lambda i: rel[i])
    rel = [rel[i] for i in order]
    digest = hashlib.sha256("\n".join(rel).encode()).hexdigest()[:10]
    root = project.review_dir / "folds" / f"k{k}_s{seed}_{digest}"
    plan_file = root / PLAN
    if plan_file.is_file():
        try:
            saved = load_json_file(plan_file)
        except (OSError, UserFacingError) as exc:
            raise UserFacingError(f"unreadable fold plan ({exc}); delete {plan_file} to start the folds over") \
                from None
        fold_of, warnings = saved.get("fold_of"), saved.get("warnings", [])
        if not (isinstance(fold_of, list) and all(type(f) is int and 0 <= f < k for f in fold_of)
                and isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
            raise UserFacingError(f"{plan_file}: fold_of must be fold numbers 0..{k - 1} and warnings texts; "
                                  f"delete it to start the folds over")
        if saved.get("images") == rel and len(fold_of) == len(rel):
            return FoldPlan(root, k, seed, rel, list(fold_of), list(warnings))
    classes = [{int(inst.class_id) for inst in annotations[i].instances} for i in order]
    groups = [project.group_of(r) for r in rel]
    fold_of = assign_folds(rel, groups, classes, k, seed)
    names = project.class_names
    warnings = [f"fold {f + 1}/{k}: no training image has class {', '.join(names[c] for c in cs)}; "
                f"its labels in this fold are judged by a model that never saw the class"
                for f, cs in classes_missing_from_training(fold_of, classes, k).items()]
    plan = FoldPlan(root, k, seed, rel, fold_of, warnings)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_file, json.dumps({"k": k, "seed": seed, "images": rel, "fold_of": fold_of,
                                             "warnings": warnings}, indent=0))
    return plan


@dataclass
class FoldTraining:
    """How each fold model is trained: the project's recipe plus these."""

    weights: str | None = None  # fine-tune from this checkpoint
    overrides: list[str] = field(default_factory=list)  # --set train.epochs=3 ...
    device: str | None = None
    predict_device: str = "cpu"


Emit = Callable[..., None]


def run_fold(project, plan: FoldPlan, i: int, training: FoldTraining, emit: Emit) -> bool:
    """Train fold ``i``'s model and predict its held-out images; True when the fold is done
    (False: the training was stopped by a signal; its last.pt lets the next run resume)."""
    from core.train.trainer import Trainer, TrainOptions

    folder = plan.fold_dir(i)
    stage = f"fold {i + 1}/{plan.k}"
    train_dir = folder / "train"
    held_out = plan.fold_images(i)
    if not held_out:
        raise UserFacingError(f"{plan.root / PLAN}: fold {i + 1} has no images; delete the folder to re-plan")

    def on_event(record: dict) -> None:
        if record.get("event") == "step":
            emit("progress", verb="analyze", stage=f"{stage} train", done=record["step"],
                 total=record["total_steps"], fold=i + 1, folds=plan.k, phase="train")

    t0 = time.perf_counter()
    emit("progress", verb="analyze", stage=f"{stage} train", done=0, total=None, fold=i + 1, folds=plan.k,
         phase="train")
    opts = TrainOptions(project=project.root, run_dir=train_dir, resume=True, weights=training.weights,
                        overrides=list(training.overrides), device=training.device, progress=False,
                        train_images=[project.image_dir / r for r in plan.train_images(i)], val_images=[],
                        on_event=on_event)
    trainer = Trainer(opts)
    trainer.run()
    if trainer.stop.requested or trainer.epoch < trainer.cfg.train.epochs:
        return False
    if not trainer.dist.is_main:
        return True  # rank 0 predicts and marks the fold done
    checkpoint = train_dir / "last.pt"
    n = predict_images(project, checkpoint, held_out, folder, training.predict_device,
                       lambda done: emit("progress", verb="analyze", stage=f"{stage} predict", done=done,
                                         total=len(held_out), fold=i + 1, folds=plan.k, phase="predict"))
    atomic_write_text(folder / DONE, json.dumps({
        "fold": i, "k": plan.k, "images": n, "checkpoint": str(checkpoint),
        "train_images": len(plan.train_images(i)), "seconds": round(time.perf_counter() - t0, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    return True


def predict_images(project, checkpoint: Path, rel_images: Sequence[str], folder: Path, device: str,
                   progress: Callable[[int], None] | None = None) -> int:
    """Predictions of ``checkpoint`` on the images (plain and mirrored) into folder/predictions*.json."""
    from core.data.images import read_image
    from core.eval.coco_results import write_coco_results
    from core.eval.records import ImagePred
    from core.infer.predictor import Predictor

    predictor = Predictor.load(checkpoint, device=device, conf=PREDICT_CONF)
    with_masks = project.config.task == "segment"
    plain, flipped = [], []
    for n, rel in enumerate(rel_images, 1):
        image = read_image(project.image_dir / rel)
        det = predictor.predict([image], rle=True)[0]
        pred = ImagePred.from_detections(det, rel)
        plain.append(pred if with_masks else ImagePred(pred.boxes, pred.scores, pred.labels, None, rel))
        mirrored = predictor.predict([np.ascontiguousarray(image[:, ::-1])], rle=True)[0]
        flipped.append(unflip_boxes(mirrored, image.shape[1], rel))
        if progress is not None:
            progress(n)
    names = project.class_names
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_coco_results(folder / PREDICTIONS, list(rel_images), plain, names)
    write_coco_results(folder / FLIP_PREDICTIONS, list(rel_images), flipped, names)
    return len(rel_images)


def unflip_boxes(det, width: int, image_id: str = ""):
    """A mirrored image's detections (anything with boxes/scores/labels) mapped back to the
    original as an ImagePred without masks (flip agreement is judged on boxes)."""
    from core.eval.records import ImagePred

    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    b = boxes.copy()
    b[:, [0, 2]] = width - boxes[:, [2, 0]]
    return ImagePred(b, det.scores, det.labels, None, image_id)


def load_fold_predictions(project, plan: FoldPlan, annotations: Sequence) -> tuple[list, list]:
    """(predictions, mirrored predictions) aligned with ``annotations``, each image's from the one
    fold that held it out. Raises UserFacingError naming the folds that are not done."""
    from core.eval.coco_results import load_coco_results

    missing = plan.missing_folds()
    if missing:
        raise UserFacingError(f"{plan.root}: folds {', '.join(str(f + 1) for f in missing)} of {plan.k} are not "
                              f"done; run `dfine analyze {project.root} --folds {plan.k}` (or --fold i for each)")
    names = project.class_names
    with_masks = project.config.task == "segment"
    index = {project.rel_image(a.image_path): n for n, a in enumerate(annotations)}
    preds: list = [None] * len(annotations)
    flips: list = [None] * len(annotations)
    for i in range(plan.k):
        rel = [r for r in plan.fold_images(i) if r in index]
        anns = [annotations[index[r]] for r in rel]
        folder = plan.fold_dir(i)
        p = load_coco_results(folder / PREDICTIONS, anns, names, project.image_dir, with_masks=with_masks)
        f = load_coco_results(folder / FLIP_PREDICTIONS, anns, names, project.image_dir, with_masks=False)
        for r, a, b in zip(rel, p, f):
            preds[index[r]], flips[index[r]] = a, b
    lost = [str(annotations[n].image_path) for n, p in enumerate(preds) if p is None]
    if lost:
        raise UserFacingError(f"{plan.root}: {len(lost)} images are in no fold (e.g. {lost[0]}); "
                              f"the image list changed since the plan: run the folds again")
    return preds, flips


# ---------------------------------------------------------------------------- what a user waits for


@dataclass
class FoldEstimate:
    """How long `dfine analyze --folds K` will train and predict, before it starts."""

    k: int
    folds_left: int
    steps_per_fold: int
    img_per_s: float | None  # training speed this estimate uses (None: never measured here)
    basis: str  # where that speed comes from
    seconds: float | None  # the folds still to do, training + predicting (None: unknown)

    def describe(self) -> str:
        if not self.folds_left:
            return f"{self.k} folds: all trained, only the ranking is left"
        if self.seconds is None:
            return (f"{self.folds_left} fold models to train ({self.steps_per_fold} steps each); how long is "
                    "known after the first steps (no training has run in this project yet)")
        per_fold = self.seconds / self.folds_left
        return (f"about {_duration(self.seconds)}: {self.folds_left} fold models x {_duration(per_fold)} "
                f"({self.steps_per_fold} steps each at {self.img_per_s:.2g} images/s, {self.basis})")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measured_train_speed(project) -> tuple[float, str] | None:
    """Training images per second of the newest training in this project (a run or a fold model,
    from its events.jsonl: the median of its step events), and which run it was."""
    cands = list(Path(project.runs_dir).glob("*/events.jsonl"))
    cands += list(Path(project.review_dir).glob("folds/*/fold_*/train/events.jsonl"))
    for path in sorted((p for p in cands if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True):
        speeds = []
        try:
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f):
                    if n > 100_000:
                        break
                    if '"step"' not in line:
                        continue
                    rec = json.loads(line)
                    if rec.get("event") == "step" and rec.get("img_per_s"):
                        speeds.append(float(rec["img_per_s"]))
        except (OSError, ValueError):
            continue
        if speeds:
            rel = path.parent.relative_to(project.root) if path.is_relative_to(project.root) else path.parent
            return float(np.median(speeds)), f"measured in {rel}"
    return None


def estimate_folds(project, n_images: int, k: int, overrides: Sequence[str] = (),
                   plan: FoldPlan | None = None) -> FoldEstimate:
    """Training steps and time of the K fold models still to train: each trains on (K-1)/K of
    the ``n_images`` labelled images for the project's epochs (or ``train.epochs=`` in
    ``overrides``), at the speed of this project's newest training; predicting a held-out image
    (plain and mirrored) is counted as two forward passes, a third of a training image each."""
    cfg = project.config.train
    epochs, batch = int(cfg.epochs), int(cfg.batch_size)
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() == "train.epochs":
            epochs = int(value)
        elif key.strip() == "train.batch_size":
            batch = int(value)
    left = len(plan.missing_folds()) if plan is not None else k
    train_images = int(np.ceil(n_images * (k - 1) / k))
    steps = int(np.ceil(train_images / max(batch, 1))) * epochs
    speed = measured_train_speed(project)
    if speed is None:
        return FoldEstimate(k, left, steps, None, "not measured", None)
    img_per_s, basis = speed
    per_fold = steps * batch / img_per_s + 2 * (n_images / k) / (3 * img_per_s)
    return FoldEstimate(k, left, steps, img_per_s, basis, left * per_fold)
