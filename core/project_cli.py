"""`dfine new | classes | split | check`: the project-folder verbs (no torch import)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import apply_overrides
from core.data.formats.yolo_txt import parse_class_id, split_rows
from core.errors import UserFacingError
from core.project.labels import _read_label_text, label_files
from core.project_lock import training_active


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


# ---------------------------------------------------------------------------- new


def add_new_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder of the new project (created if missing)")
    p.add_argument("--classes", default="", help="comma-separated class names, e.g. cat,dog")
    p.add_argument("--task", choices=["segment", "detect"], default="segment")
    p.add_argument("--runs-on", choices=["gpu", "cpu"], default="gpu",
                   help="where the trained model will run: cpu picks the lighter mask head and 100 "
                        "decoder queries in exports (model.mask_head, export.queries)")


def run_new(args: argparse.Namespace) -> int:
    from core.project import Project

    proj = Project.create(args.dir, _names(args.classes), args.task, deploy_target=args.runs_on)
    print(f"created {proj.root} ({proj.config.task}, {len(proj.class_names)} classes: "
          f"{', '.join(proj.class_names) or '-'}; model runs on {args.runs_on.upper()}); "
          f"put images in {proj.image_dir}")
    return 0


# ---------------------------------------------------------------------------- classes


def add_classes_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="print the classes with ids and instance counts")
    a = sub.add_parser("add", help="append a class")
    a.add_argument("name")
    r = sub.add_parser("rename", help="rename a class (labels keep their ids)")
    r.add_argument("old")
    r.add_argument("new")
    m = sub.add_parser("merge", help="relabel SOURCE as TARGET and remove SOURCE")
    m.add_argument("source")
    m.add_argument("target")
    d = sub.add_parser("delete", help="remove a class: its instances are deleted, or relabelled with --relabel-to")
    d.add_argument("name")
    d.add_argument("--relabel-to", default=None, metavar="CLASS")
    sub.add_parser("undo", help="undo the last class edit")


def _count_instances(proj) -> tuple[dict[int, int], list[str]]:
    counts: dict[int, int] = {}
    bad: list[str] = []
    if not proj.labels_dir.is_dir():
        return counts, bad
    for lp in label_files(proj.labels_dir):
        try:
            for line, toks in split_rows(_read_label_text(lp)):
                cid = parse_class_id(toks[0], lp, line, None)
                counts[cid] = counts.get(cid, 0) + 1
        except UserFacingError as exc:
            bad.append(str(exc))
    return counts, bad


def run_classes(args: argparse.Namespace) -> int:
    from core.project import Project

    proj = Project.open(args.project)
    action = args.action or "list"
    if action == "list":
        counts, bad = _count_instances(proj)
        for i, name in enumerate(proj.class_names):
            print(f"{i:>3}  {name:<24} {counts.get(i, 0):>7} instances")
        unknown = {k: v for k, v in counts.items() if k >= len(proj.class_names)}
        for k, v in sorted(unknown.items()):
            print(f"{k:>3}  {'(not in project.yaml)':<24} {v:>7} instances")
        for msg in bad:
            print(f"bad label file: {msg}")
        return 0
    if action in ("rename", "merge", "delete", "undo"):

        if training_active(proj.root):
            print(f"warning: a training run is using {proj.root} now; it keeps the class list it started "
                  f"with (runs/<name>/config.yaml), and images it has not read yet get the new ids. "
                  f"Stop it and train again after the edit.", file=sys.stderr)
    if action == "add":
        proj.add_class(args.name)
    elif action == "rename":
        proj.rename_class(args.old, args.new)
    elif action == "merge":
        proj.merge_classes(args.source, args.target)
    elif action == "delete":
        proj.delete_class(args.name, relabel_to=args.relabel_to)
    elif action == "undo":
        desc = proj.undo_class_edit()
        print(f"undone: {desc}")
    print(f"classes: {', '.join(proj.class_names)}")
    return 0


# ---------------------------------------------------------------------------- split


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    p.add_argument("--reset", action="store_true",
                   help="recompute every image from the seed (default: keep existing assignments)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides for this run, e.g. split.val_fraction=0.3 split.seed=1")


def run_split(args: argparse.Namespace) -> int:
    from core.project import Project

    proj = Project.open(args.project)
    if args.overrides:
        proj.config = apply_overrides(proj.config, args.overrides)
    assign = proj.write_splits(reset=args.reset)
    n_val = sum(1 for s in assign.values() if s == "val")
    groups = {proj.group_of(r) for r in assign} - {None}
    extra = f", {len(groups)} groups" if groups else ""
    print(f"train {len(assign) - n_val}, val {n_val} images{extra} -> {proj.splits_dir}")
    return 0


# ---------------------------------------------------------------------------- check


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)


def run_check(args: argparse.Namespace) -> int:
    """Exit 0 when every label loads (warnings allowed), 1 when any file is bad."""
    from core.project import Project, shared_label_message

    proj = Project.open(args.project)
    warnings: list[str] = []
    anns, errors = proj.load_all(warnings)
    n_inst = sum(len(a.instances) for a in anns)
    stems = {str(proj.label_path(p)) for p in proj.image_paths()}
    orphans = [lp for lp in sorted(proj.labels_dir.rglob("*.txt")) if str(lp) not in stems] \
        if proj.labels_dir.is_dir() else []
    for w in warnings:
        print(f"warning: {w}")
    for lp in orphans:
        print(f"warning: {lp}: label file without an image")
    for lp, imgs in proj.shared_label_files().items():  # a.jpg and a.png: labels pair by stem
        print(f"warning: {shared_label_message(lp, imgs)}")
    for e in errors:
        print(f"error: {e}")
    print(f"{len(anns)} images ok, {n_inst} instances, {len(errors)} bad files, {len(warnings)} warnings")
    return 1 if errors else 0
