"""Train/val splits and image groups of a project."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Literal

from core.atomic_io import atomic_write_text
from core.bounded_input import compile_user_regex, read_regular_bytes, search_user_regex
from core.errors import ConfigError
from core.project.host import ProjectHost

GROUPS_FILE = "groups.csv"
Split = Literal["train", "val"]


class Splits(ProjectHost):
    """Train/val assignment of a project (a mixin of :class:`core.project.Project`): groups from
    groups.csv or a pattern, split files kept, new images placed by a seeded hash."""


    def group_of(self, image: Path | str) -> str | None:
        """Group id of an image (split.group_by: csv | pattern), None when ungrouped."""
        mode = self.config.split.group_by
        rel = self.rel_image(image)
        if mode == "csv":
            table = self._groups_table()
            return table.get(rel) or table.get(Path(rel).name)
        if mode == "pattern":
            pattern = self.config.split.group_pattern
            cached = getattr(self, "_group_regex", None)
            if cached is None or cached[0] != pattern:
                cached = (pattern, compile_user_regex(pattern, f"{self.config_path}: split.group_pattern"))
                self._group_regex = cached
            m = search_user_regex(cached[1], str(Path(rel).with_suffix("")),
                                  f"{self.config_path}: split.group_pattern")
            if not m:
                return None
            return m.group(1) if m.groups() else m.group(0)
        return None

    def _groups_table(self) -> dict[str, str]:
        path = self.root / GROUPS_FILE
        key = (path, path.stat().st_mtime_ns) if path.exists() else (path, None)
        cached = getattr(self, "_groups_cache", None)
        if cached and cached[0] == key:
            return cached[1]
        table: dict[str, str] = {}
        if not path.exists():
            raise ConfigError(f"{self.config_path}: split.group_by is 'csv' but {path} does not exist "
                              f"(header `image,group`)")
        try:
            text = read_regular_bytes(path).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); save it as UTF-8") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder, not a csv file") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        for lineno, row in enumerate(reader, start=1):
            if not row or not any(c.strip() for c in row):
                continue
            if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["image", "group"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ConfigError(f"{path}:{lineno}: expected `image,group`, got {','.join(row)!r}")
            table[row[0].strip().replace("\\", "/")] = row[1].strip()
        self._groups_cache = (key, table)
        return table

    def _hash_split(self, key: str) -> Split:
        s = self.config.split
        h = hashlib.sha256(f"{s.seed}:{key}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2**64
        return "val" if u < s.val_fraction else "train"

    def _read_split_files(self) -> dict[str, Split]:
        out: dict[str, Split] = {}
        for name in ("train", "val"):
            p = self.splits_dir / f"{name}.txt"
            if p.exists():
                try:
                    text = read_regular_bytes(p).decode("utf-8-sig")
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{p}: not a UTF-8 text file (byte {exc.start}); fix or delete it "
                                      f"(`dfine split --reset` rewrites it)") from None
                except IsADirectoryError:
                    raise ConfigError(f"{p}: is a folder, not a split file") from None
                for line in text.splitlines():
                    line = line.strip()
                    if line:
                        out[self.rel_image(Path(line)) if Path(line).is_absolute() else line] = name
        return out

    def compute_splits(self, reset: bool = False) -> dict[str, Split]:
        """rel image path -> split. Existing split files are kept (an image never changes side);
        new images follow their group's side if the group is already placed, else a seeded hash
        of the group id (or of the path) - so the result does not depend on which images exist."""
        images = [self.rel_image(p) for p in self.image_paths()]
        existing = {} if reset else self._read_split_files()
        assign: dict[str, Split] = {}
        group_side: dict[str, Split] = {}
        groups = {rel: self.group_of(rel) for rel in images}
        for rel in images:
            if rel in existing:
                assign[rel] = existing[rel]
                g = groups[rel]
                if g is not None:
                    group_side.setdefault(g, existing[rel])
        for rel in images:
            if rel in assign:
                continue
            g = groups[rel]
            if g is not None and g in group_side:
                assign[rel] = group_side[g]
            else:
                assign[rel] = self._hash_split(f"group:{g}" if g is not None else f"image:{rel}")
                if g is not None:
                    group_side[g] = assign[rel]
        return assign

    def write_splits(self, reset: bool = False) -> dict[str, Split]:
        """Write splits/train.txt and val.txt (paths relative to the image folder, one a line)."""
        with self.lock():
            assign = self.compute_splits(reset=reset)
            broken = next((r for r in assign if "\n" in r or "\r" in r), None)
            if broken is not None:  # one line per image: a line break would split the name in two
                raise ConfigError(f"{self.image_dir / broken!r}: the file name contains a line break; "
                                  f"rename the image (splits were not written)")
            self.splits_dir.mkdir(parents=True, exist_ok=True)
            for name in ("train", "val"):
                rows = sorted(r for r, s in assign.items() if s == name)
                atomic_write_text(self.splits_dir / f"{name}.txt", "".join(r + "\n" for r in rows))
        return assign

    def split_images(self, which: Split) -> list[Path]:
        if which not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {which!r}")
        assign = self.compute_splits()
        return sorted(self.image_dir / r for r, s in assign.items() if s == which)
