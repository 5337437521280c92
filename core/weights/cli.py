"""`dfine weights list | get NAME | add FILE`.

`get --events -` prints one JSON object per line (the GUI's weights picker reads them), models in
``core.messages``: ``progress`` stage "start" {name, url, path, resume_from}, ``progress`` stage
"download" {name, done, total} (bytes), ``result`` {name, paths.weights, bytes, check},
``cancelled`` {name, bytes}, ``error`` {message, type}; every event has ``event`` and ``time``.
SIGTERM (the GUI's Cancel) stops the download within a fraction of a second, even while a read waits
on a stalled server, and keeps the `.part`; a stall (no byte for `download.STALL_TIMEOUT` s) or the
overall `download.DEADLINE` ends it as an error, the `.part` kept for the next `get` to resume.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.errors import UserFacingError, WeightsError
from core.messages import event_line, make_event
from core.weights.cache import cached_file, weights_dir
from core.weights.download import DownloadCancelled
from core.weights.manager import add_file, cache_rows, fetch
from core.weights.progress import DownloadProgress
from core.weights.registry import WeightsEntry, find_entry
from core.weights.sam_registry import SamEntry, add_sam_file, fetch_sam, find_sam, sam_entries, sam_files

_T = TypeVar("_T")


def weights_event(kind: str, **fields) -> dict:
    """One event of `weights get --events -`, validated by ``core.messages`` (verb "weights")."""
    if kind in ("progress", "result", "cancelled"):
        fields = {"verb": "weights", **fields}
    return make_event(kind, **fields)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", type=Path, help="use this project's model.weights_dir")
    common.add_argument("--dir", type=Path, help="cache folder (default: $DFINE_WEIGHTS_DIR, then "
                        "the project's model.weights_dir, then the platform cache)")
    ls = sub.add_parser("list", parents=[common], help="every known checkpoint and whether it is cached")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    get = sub.add_parser("get", parents=[common], help="download (or resume) into the cache and verify")
    get.add_argument("names", nargs="+", metavar="NAME", help="e.g. dfine_s_coco (see `dfine weights list`)")
    get.add_argument("--events", metavar="DEST", choices=["-"], help="'-': JSON progress lines on stdout")
    add = sub.add_parser("add", parents=[common], help="put a file downloaded elsewhere into the cache")
    add.add_argument("file", type=Path, nargs="+", help="a checkpoint; or both files of a SAM pair (with --name)")
    add.add_argument("--name", help="which checkpoint it is, when the file was renamed; a SAM pair's name")


def _folder(args: argparse.Namespace) -> Path:

    if args.dir is not None:
        return args.dir.expanduser()
    return weights_dir(args.project)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "get": _get, "add": _add}[args.action](args)


def _list(args: argparse.Namespace) -> int:

    folder = _folder(args)
    rows = cache_rows(folder)
    if args.json:
        print(json.dumps([{"name": r.entry.name, "kind": r.entry.kind, "size": "/".join(r.entry.sizes),
                           "backbone": r.entry.backbone, "dataset": r.entry.dataset,
                           "classes": r.entry.classes, "ap": r.entry.ap, "cached": r.present,
                           "bytes": r.bytes, "partial_bytes": r.partial, "path": str(r.path),
                           "url": r.entry.download_url()}
                          for r in rows] + [_sam_row(e, folder) for e in sam_entries()], indent=1))
        return 0
    print(f"weights cache: {folder}")
    header = f"{'name':<20} {'size':<5} {'backbone':<8} {'dataset':<22} {'AP':>5}  {'cached':<11} path"
    print(header)
    for r in rows:
        e = r.entry
        cached = (f"{(r.bytes or 0) / 1e6:.0f} MB" if r.present else
                  f"part {r.partial / 1e6:.0f} MB" if r.partial else "no")
        ap = f"{e.ap:.1f}" if e.ap is not None else "-"
        print(f"{e.name:<20} {'/'.join(e.sizes) or '-':<5} {e.backbone:<8} {e.dataset:<22} {ap:>5}  "
              f"{cached:<11} {r.path}")
    print("\npromptable segmentation (click-to-segment), encoder + decoder ONNX:")
    for s in sam_entries():
        row = _sam_row(s, folder)
        print(f"{s.name:<20} ~{s.size_mb:.0f} MB  {'cached' if row['cached'] else 'no':<7} {s.licence.split(' (')[0]:<11} "
              f"{row['path']}")
    return 0


def _sam_row(e, folder: Path) -> dict:
    paths = sam_files(e, folder)
    return {"name": e.name, "kind": "promptable_segmentation", "contract": e.contract,
            "cached": all(p.is_file() for p in paths.values()), "size_mb": e.size_mb, "licence": e.licence,
            "source": e.source, "path": str(paths["encoder"].parent),
            "url": [e.download_url("encoder"), e.download_url("decoder")]}


class _Stop:
    """SIGTERM/SIGINT -> the download stops at its next look (every `download.POLL` s, also while a
    read is blocked); the `.part` stays for a resume."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:  # noqa: PYI034
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __call__(self) -> bool:
        return self.requested


def _get(args: argparse.Namespace) -> int:

    events = args.events == "-"

    def emit(kind: str, **fields) -> None:
        if events:
            print(event_line(weights_event(kind, **fields)), flush=True)

    folder = _folder(args)
    todo: list[WeightsEntry | SamEntry] = []
    for name in args.names:
        entry = find_entry(name) or find_sam(name)
        if entry is None:
            raise WeightsError(f"{name}: not a known weights name (see `dfine weights list`)")
        todo.append(entry)
    with _Stop() as stop:
        for entry in todo:
            if isinstance(entry, SamEntry):  # (from find_sam above)
                code = _get_sam(entry, folder, emit, events, stop)
                if code:
                    return code
                continue
            final = cached_file(entry, folder)
            part = final.with_name(final.name + ".part")
            emit("progress", stage="start", name=entry.name, url=entry.download_url(), path=str(final),
                 resume_from=part.stat().st_size if part.is_file() and not final.is_file() else 0)
            got = _fetch_reporting(entry.name, emit, events,
                                   functools.partial(fetch, entry, folder, should_stop=stop))
            if got is None:
                return 130
            path, check = got
            size = path.stat().st_size
            emit("result", name=entry.name, paths={"weights": str(path)}, bytes=size, check=check)
            if not events:
                print(f"{entry.name}: {path} ({size / 1e6:.1f} MB; {check})")
    return 0


def _fetch_reporting(name: str, emit, events: bool, run: Callable[[DownloadProgress], _T]) -> _T | None:
    """One download behind a progress bar, for `get`: its result, or None when cancelled (the
    'cancelled' event and the stderr line are sent); any other error is sent as an 'error' event
    and raised."""
    bar = DownloadProgress(name, emit if events else None)
    try:
        got = run(bar)
    except DownloadCancelled as exc:
        bar.close()
        emit("cancelled", name=name, bytes=bar.done)
        print(f"dfine weights: {exc}", file=sys.stderr)
        return None
    except UserFacingError as exc:
        bar.close()
        emit("error", message=str(exc), type=exc.__class__.__name__)
        raise
    bar.close()
    return got


def _get_sam(entry, folder: Path, emit, events: bool, stop) -> int:
    """`get` of a SAM pair: both halves, the same events as a checkpoint (paths: encoder, decoder)."""
    emit("progress", stage="start", name=entry.name, url=entry.download_url("encoder"),
         path=str(sam_files(entry, folder)["encoder"].parent), resume_from=0)
    got = _fetch_reporting(entry.name, emit, events, lambda bar: fetch_sam(entry, folder, bar, stop))
    if got is None:
        return 130
    paths, check = got
    size = sum(p.stat().st_size for p in paths.values())
    emit("result", name=entry.name, paths={k: str(v) for k, v in paths.items()}, bytes=size, check=check)
    if not events:
        print(f"{entry.name}: {paths['encoder'].parent} ({size / 1e6:.1f} MB; {check})")
    return 0


def _add(args: argparse.Namespace) -> int:

    sam = find_sam(args.name) if args.name else None
    if sam is not None:
        for file in args.file:
            part, path = add_sam_file(file, _folder(args), sam)
            print(f"{sam.name} {part}: {path} (verified: {sam.contract} contract)")
        missing = [p for p, f in sam_files(sam, _folder(args)).items() if not f.is_file()]
        if missing:
            print(f"{sam.name}: still missing the {' and '.join(missing)} (add it the same way)")
        return 0
    if len(args.file) != 1:
        raise WeightsError("add takes one checkpoint file (two files only for a SAM pair, with --name)")
    entry, path = add_file(args.file[0], _folder(args), args.name)
    print(f"{entry.name}: {path} (verified: {entry.dataset}, size {'/'.join(entry.sizes) or '-'})")
    return 0
