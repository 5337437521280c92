"""Class edits as changes of label rows: the plan of a delete/merge, remapping every label file's
class ids, the rows an edit changed and how to put them back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from core.data.formats.yolo_txt import parse_class_id
from core.errors import LabelError, UserFacingError
from core.project.labels import _read_label_text, label_files


def _class_index(names: list[str], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise UserFacingError(f"no class named {name!r} (classes: {', '.join(names)})") from None


def _delete_plan(names: list[str], name: str, relabel_to: str | None):
    d = _class_index(names, name)
    t = _class_index(names, relabel_to) if relabel_to is not None else None
    new_names = [c for i, c in enumerate(names) if i != d]
    mapping: dict[int, int | None] = {}
    for i in range(len(names)):
        j = t if (i == d and t is not None) else i
        mapping[i] = None if (i == d and t is None) else (j - (1 if j > d else 0))
    return ("merge" if t is not None else "delete"), new_names, mapping, d


def remap_label_files(labels_dir: Path, mapping: dict[int, int | None], num_classes: int | None,
                      inverse: dict[int, int] | None = None) -> dict[Path, tuple[str, str]]:
    """New text for every label file whose class ids change ({path: (old, new)}); nothing written.

    With ``inverse`` (the edit's new->old id map, as undo will use it), also every file whose
    text stays but whose rows change class: merging u (id 3) into the later t (id 4) leaves a
    file of u rows byte for byte the same while "3" now means t. Undo needs that file's record;
    without it the inverse map gave those rows to t (found by the lock stress test).

    Works on the text (only the first token of a row changes, other bytes stay) so files
    written by other tools keep their formatting. Refuses (UserFacingError) if any file is bad:
    relabelling around a broken file would leave it with ids from the old list.
    """
    changes: dict[Path, tuple[str, str]] = {}
    errors: list[str] = []
    for lp in label_files(labels_dir):
        try:
            old = _read_label_text(lp)
            new = remap_text(old, mapping, lp, num_classes)
        except LabelError as exc:
            errors.append(str(exc))
            continue
        # unchanged bytes with a changed_rows record = rows that changed class, not text
        if new != old or (inverse is not None and changed_rows(old, mapping, lp, num_classes, inverse)):
            changes[lp] = (old, new)
    if errors:
        raise UserFacingError("class edit refused, fix these label files first (nothing was changed):\n  "
                              + "\n  ".join(errors))
    return changes


def _remap_line(line: str, mapping: Mapping[int, int | None], path: Path, lineno: int,
                num_classes: int | None) -> str | None:
    """One row with its class id mapped (None: the row is removed); blank lines unchanged."""
    toks = line.split()
    if not toks:
        return line
    cid = parse_class_id(toks[0], path, lineno, num_classes)
    if cid not in mapping:
        raise LabelError(path, lineno, "class id not covered by the class edit", toks[0])
    new = mapping[cid]
    if new is None:
        return None
    lead = line[: len(line) - len(line.lstrip())]
    rest = line.lstrip()[len(toks[0]):]
    return f"{lead}{new}{rest}"


def remap_text(text: str, mapping: dict[int, int | None], path: Path, num_classes: int | None) -> str:
    """Apply old->new class ids to one file's text; rows mapped to None are removed."""
    text = text.lstrip("\ufeff")
    out = []
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        new = _remap_line(line, mapping, path, i, num_classes)
        if new is not None:
            out.append(new)
    return "".join(out)


def changed_rows(text: str, mapping: dict[int, int | None], path: Path, num_classes: int | None,
                 inverse: dict[int, int] | None = None) -> list[list[str | None]]:
    """[old row, new row or None] for every row a class edit changes (line ends stripped):
    what undo needs to put each row back exactly even after the file was edited since.

    "Changes" means its class, not only its text: merging u (id 3) into t (id 4) leaves u's rows
    as "3 ..." (t is id 3 afterwards), and without a record undo would map them back through
    ``inverse`` to t (found by the lock stress test)."""
    rows: list[list[str | None]] = []
    for i, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        new = _remap_line(line, mapping, path, i, num_classes)
        if new != line:
            rows.append([line, new])
        elif new is not None and inverse is not None and line.split():
            old_id = parse_class_id(line.split()[0], path, i, num_classes)
            new_id = mapping[old_id]
            if new_id is None or inverse.get(new_id) != old_id:  # same text, other class: undo must know
                rows.append([line, new])
    return rows


def undo_text(current: str, entry: dict, inverse: dict[int, int], path: Path, num_classes: int) -> str:
    """The text of one label file with a class edit undone.

    Unchanged since the edit: the old bytes. Edited since: every row the edit changed and that
    is still there gets its old text back, every row it removed is appended, and rows added
    since get the inverse id map (so later labelling is kept)."""
    if current == entry["new"]:
        return entry["old"]
    back: dict[str, list[str]] = {}
    removed: list[str] = []
    for old_row, new_row in entry.get("rows", []):
        if new_row is None:
            removed.append(old_row)
        else:
            back.setdefault(new_row, []).append(old_row)
    out = []
    for i, line in enumerate(current.lstrip("\ufeff").splitlines(keepends=True), start=1):
        body = line.rstrip("\r\n")
        if back.get(body):
            out.append(back[body].pop(0) + line[len(body):])
            continue
        new = _remap_line(line, inverse, path, i, num_classes)
        if new is not None:
            out.append(new)
    if removed:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(r + "\n" for r in removed)
    return "".join(out)
