"""`dfine <verb>`: every GUI action as a headless command.

Each verb lives in the module of the room that owns it; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only
when their verb is used, so `dfine new` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from core import __version__
from core.errors import UserFacingError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "new": ("core.project_cli", "create a project from the template"),
    "demo": ("core.demo", "create (or reuse) the built-in demo project"),
    "classes": ("core.project_cli", "list/add/rename/merge/delete classes"),
    "split": ("core.project_cli", "(re)write splits/train.txt and val.txt"),
    "check": ("core.project_cli", "load every label and report malformed files"),
    "import": ("core.data.formats.cli", "import YOLO / Ultralytics data.yaml / COCO / labelme into a project"),
    "convert": ("core.data.formats.cli", "export a project's labels to YOLO / COCO / labelme"),
    "train": ("core.train.cli", "train D-FINE-seg on a project"),
    "val": ("core.train.cli", "evaluate a checkpoint on the project's val split"),
    "export": ("core.export.cli", "export a checkpoint to ONNX / OpenVINO / TensorRT"),
    "infer": ("core.infer.cli", "run a model on images, a folder, a video or a camera"),
    "bench": ("core.bench", "latency/F1 per format x precision x batch (paper protocol)"),
    "analyze": ("core.analysis.cli", "rank likely label mistakes"),
    "review": ("core.analysis.review_cli", "list / accept / dismiss / reopen / undo the flagged label mistakes"),
    "weights": ("core.weights.cli", "list / download / add the official pretrained checkpoints"),
}


def _load(verb: str):
    """The verb's module (every VERBS module exists; tests/test_layers.py checks it)."""
    return importlib.import_module(VERBS[verb][0])


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Parser with every verb listed; only ``verb``'s module is imported for its options."""
    parser = argparse.ArgumentParser(prog="dfine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != verb:
            continue
        module = _load(name)
        adder = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        adder(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in VERBS else None)
    args = parser.parse_args(argv)
    if args.version:

        print(f"dfine-studio {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return 2
    module = _load(args.verb)
    runner = getattr(module, f"run_{args.verb}", None) or module.run
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserFacingError as exc:  # bad input: a clear message, never a traceback
        print(f"dfine {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dfine ... | head` closed the pipe: not our error, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        # full disk, quota, read-only or forbidden folder: the machine's state, not a bug
        where = f"{exc.filename}: " if exc.filename and str(exc.filename) not in str(exc.strerror) else ""
        print(f"dfine {args.verb}: error: {where}{exc.strerror}", file=sys.stderr)
        return 2


# OSErrors that describe the user's machine (and how to fix it), reported as one line.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


if __name__ == "__main__":
    sys.exit(main())
