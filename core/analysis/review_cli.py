"""`dfine review <project> list | accept | dismiss | reopen | undo [ITEM ...]`: the Review panel's
actions as a headless command (the same :class:`core.analysis.review.Review` code).

ITEM is the rank `list` shows (1 = most likely mistake) or a prefix of the item's key. `accept`
applies the suggested fix to the label file under the project lock; `undo` reverts the newest
accepted fix (or the given one) while the file still holds what the fix wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.analysis.review import ACTION_TEXT, Review, ReviewItem
from core.errors import UserFacingError

ACTIONS = ("list", "accept", "dismiss", "reopen", "undo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder (its review/ holds the analysis)")
    p.add_argument("action", choices=ACTIONS, help="list the items, or decide on some")
    p.add_argument("items", nargs="*", help="ranks (as `list` numbers them) or key prefixes")
    p.add_argument("--all", action="store_true", help="list: also the decided items")
    p.add_argument("--json", action="store_true", help="list: one JSON object per item on stdout")


def _line(it: ReviewItem, class_names: list[str]) -> str:
    cname = class_names[it.class_id] if it.class_id is not None and 0 <= it.class_id < len(class_names) else ""
    state = it.decision or "open"
    action = ACTION_TEXT.get(str(it.fix.get("action")), "")
    text = str(it.data.get("message", ""))
    return (f"#{it.rank:<4} {it.key[:8]}  {state:<9} {it.score:.2f}  {it.kind:<19} {it.image.name}"
            f"{'  ' + cname if cname else ''}  {text}{'  [' + action + ']' if action else ''}")


def run(args: argparse.Namespace) -> int:
    from core.project import Project

    project = Project.open(args.project)
    review = Review.of_project(project)
    if not review.items:
        raise UserFacingError(f"{project.review_dir}: no analysis to review; run `dfine analyze {project.root}` first")
    names = list(project.class_names)
    if args.action == "list":
        shown = [it for it in review.items if args.all or it.is_open]
        for it in shown:
            if args.json:
                print(json.dumps({"rank": it.rank, "key": it.key, "decision": it.decision, **it.data}))
            else:
                print(_line(it, names))
        if not args.json:
            n_open = sum(it.is_open for it in review.items)
            print(f"{n_open} open, {len(review.items) - n_open} decided")
        return 0
    if args.action == "undo":
        undo_targets: list[ReviewItem | None] = [review.find(ref) for ref in args.items] or [None]
        for target in undo_targets:
            it, change = review.undo(target)
            print(f"undone #{it.rank}: {change} ({it.image.name})")
        return 0
    if not args.items:
        raise UserFacingError(f"dfine review {args.action}: give the item(s), e.g. `dfine review {args.project} "
                              f"{args.action} 1 2` (ranks from `list`)")
    targets = [review.find(ref) for ref in args.items]  # all resolved before any is changed
    for it in targets:
        if args.action == "accept":
            print(f"accepted #{it.rank}: {review.accept(it)} ({it.image.name})")
        elif args.action == "dismiss":
            review.dismiss(it)
            print(f"dismissed #{it.rank} ({it.image.name})")
        else:
            review.reopen(it)
            print(f"reopened #{it.rank} ({it.image.name})")
    return 0
