"""Our network against the official D-FINE code itself, run side by side on this machine.

    .venv/bin/python benchmarks/official_parity.py --dfine-repo /path/to/Peterande/D-FINE \
        [--dfine-seg-repo /path/to/ArgoHA/D-FINE-seg] [--reference ../shared/reference] \
        [--sizes n s m l x] [--image 640] [--losses]

Needs a checkout of github.com/Peterande/D-FINE (the fixtures were made at commit 4a1f73a); it
is imported, never copied. torchvision does not import with the pinned torch wheel, so a
stand-in module satisfies the official package's imports; the model code never calls it.

1. The fixture (size N): official and ours on its weights and input, each against the fixture
   and against each other (encoder bitwise, end to end), and the official decoder on the
   fixture's own encoder outputs.
2. Every size (one process each): the official model's random init + N(0, 0.02) noise on every floating tensor
   (as the fixture) copied into ours; a random image; encoder outputs and end-to-end outputs of
   the two compared element-wise.
3. With --losses: benchmarks/loss_parity.py (the official criterion and matcher, and upstream
   D-FINE-seg's mask losses and mask costs, against ours on the same outputs and targets).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def install_torchvision_stand_in() -> None:
    """Make `import torchvision[...]` (and the official repo's optional tools) import as inert
    modules whose every attribute is a subclassable dummy class."""

    class _Meta(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Meta(name, (_Dummy,), {})

    class _Dummy(metaclass=_Meta):
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return _Dummy()

        def __getattr__(self, name):
            return _Dummy()

    class _Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Meta(name, (_Dummy,), {})

    stubbed = ("torchvision", "faster_coco_eval", "tensorboard", "calflops", "wandb", "loguru")

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in stubbed or name.startswith("torch.utils.tensorboard"):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            module = _Module(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Finder())
    real_version = importlib.metadata.version
    importlib.metadata.version = lambda name: "0.16.0" if name == "torchvision" else real_version(name)


def official_model(dfine_repo: Path, size: str):
    from src.core import YAMLConfig  # the official package, from dfine_repo on sys.path

    cwd = os.getcwd()
    os.chdir(dfine_repo)  # its configs include each other by relative path
    try:
        cfg = YAMLConfig(f"configs/dfine/dfine_hgnetv2_{size}_coco.yml", HGNetv2={"pretrained": False})
        return cfg.model.eval()
    finally:
        os.chdir(cwd)


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def compared(a, b) -> str:
    """'bitwise equal', or the max abs difference."""
    return "bitwise equal" if torch_equal(a, b) else f"{max_diff(a, b):.2e}"


def torch_equal(a, b) -> bool:
    import torch

    return all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, (list, tuple)) else torch.equal(a, b)


def fixture_check(dfine_repo: Path, reference: Path) -> None:
    import torch

    from core.model import build_model

    ref = torch.load(reference / "dfine_n_nc80_forward.pt", weights_only=True)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ref["state_dict_fp16"].items()}
    off = official_model(dfine_repo, "n")
    off.load_state_dict(sd)
    ours = build_model("n", 80, task="detect", image_size=640).eval()
    ours.load_state_dict(sd)
    x = ref["input_rgb_uint8"].float() / 255
    with torch.no_grad():
        f_off, f_ours = off.encoder(off.backbone(x)), ours.encoder(ours.backbone(x))
        o_off, o_ours = off(x), ours(x)
        d_off = off.decoder([f.float() for f in ref["encoder_outputs"]])
    print("## The fixture (size N, its weights and input)\n")
    print("| | official vs fixture | ours vs fixture | official vs ours |")
    print("|---|---|---|---|")
    for i, (a, b, r) in enumerate(zip(f_off, f_ours, ref["encoder_outputs"])):
        print(f"| encoder output {i} | {max_diff(a, r):.2e} | {max_diff(b, r):.2e} | {compared(a, b)} |")
    for key in ("pred_logits", "pred_boxes"):
        print(f"| end to end {key} | {max_diff(o_off[key], ref[key]):.2e} | "
              f"{max_diff(o_ours[key], ref[key]):.2e} | {max_diff(o_off[key], o_ours[key]):.2e} |")
    for key in ("pred_logits", "pred_boxes"):
        print(f"| official decoder on the fixture's encoder outputs, {key} | "
              f"{max_diff(d_off[key], ref[key]):.2e} | | |")


def size_row(dfine_repo: Path, size: str, image: int) -> None:
    import torch

    from core.model import build_model

    torch.manual_seed(0)
    off = official_model(dfine_repo, size)
    with torch.no_grad():
        for t in off.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.02)
    ours = build_model(size, 80, task="detect", image_size=image).eval()
    ours.load_state_dict(off.state_dict())
    x = torch.rand(1, 3, image, image)
    with torch.no_grad():
        f_off, f_ours = off.encoder(off.backbone(x)), ours.encoder(ours.backbone(x))
        o_off, o_ours = off(x), ours(x)
    enc = ("bitwise equal" if torch_equal(f_off, f_ours)
           else f"{max(max_diff(a, b) for a, b in zip(f_off, f_ours)):.2e}")
    n_params = sum(p.numel() for p in ours.parameters())
    n_train, train_diff = training_outputs_diff(off, ours)
    print(f"| {size} | {n_params:,} | {enc} | {max_diff(o_off['pred_logits'], o_ours['pred_logits']):.2e} | "
          f"{max_diff(o_off['pred_boxes'], o_ours['pred_boxes']):.2e} | {n_train} tensors, "
          f"{train_diff:.2e} |", flush=True)


def _tensors(tree, prefix: str = "") -> dict:
    """Every tensor (and plain value) of a nested output dict, by its path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _tensors(sub, f"{prefix}.{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in _tensors(sub, f"{prefix}[{i}]").items()}
    return {prefix: tree}


def training_outputs_diff(off, ours) -> tuple[int, float]:
    """Training mode with targets (contrastive denoising groups drawn from the same seed): every
    output — final, aux layers, encoder, pre, denoising, dn_meta — official vs ours."""
    import torch

    x = torch.rand(2, 3, 320, 320)
    targets = [{"labels": torch.tensor([1, 5, 7]),
                "boxes": torch.tensor([[.3, .3, .2, .2], [.6, .5, .3, .4], [.5, .5, .9, .9]])},
               {"labels": torch.tensor([2]), "boxes": torch.tensor([[.4, .6, .2, .3]])}]
    off.train()
    ours.train()
    torch.manual_seed(123)
    t_off = _tensors(off(x, targets))
    torch.manual_seed(123)
    t_ours = _tensors(ours(x, targets))
    if set(t_off) != set(t_ours):
        raise SystemExit(f"training outputs differ in keys: {sorted(set(t_off) ^ set(t_ours))[:8]}")
    worst = 0.0
    for key, a in t_off.items():
        b = t_ours[key]
        if not torch.is_tensor(a):
            if a != b:
                raise SystemExit(f"training output {key}: official {a!r}, ours {b!r}")
            continue
        if a.shape != b.shape:
            raise SystemExit(f"training output {key}: official {tuple(a.shape)}, ours {tuple(b.shape)}")
        if a.numel():
            worst = max(worst, max_diff(a, b))
    return sum(torch.is_tensor(v) for v in t_off.values()), worst


# ArgoHA/D-FINE-seg's MaskDecoder + mask MLP -> our MaskHead (same modules, other names).
_SEG_NAMES = {"lateral.": "pixel_decoder.lateral.", "bn.": "pixel_decoder.lateral_norm.",
              "fusion_conv.": "pixel_decoder.fuse_conv.", "fusion_norm.": "pixel_decoder.fuse_norm.",
              "up_conv.": "pixel_decoder.out_conv.", "bn1.": "pixel_decoder.out_norm."}


def _our_mask_key(key: str) -> str:
    prefix = next(p for p in _SEG_NAMES if key.startswith(p))
    return _SEG_NAMES[prefix] + key[len(prefix):]


def mask_head_row(image: int) -> None:
    """Size S's mask head against upstream D-FINE-seg's (importable as `src`), same weights and inputs."""
    import importlib

    import torch

    from core.model.mask_head import MaskHead

    upstream = importlib.import_module("src.d_fine.arch.dfine_decoder")
    torch.manual_seed(0)
    theirs_pix = upstream.MaskDecoder(in_chs=[256, 256, 256], out_ch=256).eval()
    theirs_mlp = upstream.MLP(256, 256, 256, num_layers=3).eval()
    ours = MaskHead([256, 256, 256], [8, 16, 32], 256).eval()
    noised = {k: v + 0.02 * torch.randn_like(v) for k, v in theirs_pix.state_dict().items()}
    theirs_pix.load_state_dict(noised)
    ours.load_state_dict({**{_our_mask_key(k): v for k, v in noised.items()},
                          **{f"query_mlp.{k}": v for k, v in theirs_mlp.state_dict().items()}})
    feats = [torch.randn(1, 256, image // s, image // s) for s in (8, 16, 32)]
    hidden = torch.randn(1, 300, 256)
    with torch.no_grad():
        f_theirs, f_ours = theirs_pix(feats), ours.features(feats)
        # upstream's own embedding + scaled dot product, called on a stand-in for its decoder
        l_theirs = upstream.DFINETransformer._mask_logits_from_h(
            types.SimpleNamespace(mask_head=theirs_mlp), hidden, f_theirs)
        l_ours = ours.logits(hidden, f_ours)
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"| s, {image}x{image} | {n_params:,} | {compared(f_theirs, f_ours)} | {compared(l_theirs, l_ours)} "
          f"(of max {l_theirs.abs().max().item():.1f}) |", flush=True)


def _in_subprocess(args: argparse.Namespace, *extra: str) -> None:
    """One official model per process: its YAMLConfig keeps global state between loads (a
    second size built in the same process inherits the first one's decoder settings)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--dfine-repo", str(args.dfine_repo),
           "--reference", str(args.reference), "--image", str(args.image),
           "--threads", str(args.threads), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(extra)} failed:\n{out.stderr[-3000:]}")
    print(out.stdout, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dfine-repo", type=Path, required=True, help="checkout of Peterande/D-FINE")
    ap.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    ap.add_argument("--sizes", nargs="+", default=["n", "s", "m", "l", "x"])
    ap.add_argument("--image", type=int, default=640)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dfine-seg-repo", type=Path, default=None,
                    help="also compare the mask head with a checkout of ArgoHA/D-FINE-seg")
    ap.add_argument("--losses", action="store_true",
                    help="also compare the losses and matcher (benchmarks/loss_parity.py)")
    ap.add_argument("--_fixture", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_mask", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_size", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (args.dfine_repo / "src" / "zoo" / "dfine" / "dfine.py").is_file():
        ap.error(f"{args.dfine_repo}: not a checkout of Peterande/D-FINE (no src/zoo/dfine/dfine.py)")
    if args._fixture or args._size or args._mask:
        install_torchvision_stand_in()
        # both repos call their package `src`; only one of them may be importable per process
        sys.path.insert(0, str((args.dfine_seg_repo if args._mask else args.dfine_repo).resolve()))
        sys.path.insert(0, str(REPO))
        import torch

        torch.set_num_threads(args.threads)
        if args._fixture:
            fixture_check(args.dfine_repo.resolve(), args.reference)
        elif args._mask:
            mask_head_row(args.image)
        else:
            size_row(args.dfine_repo.resolve(), args._size, args.image)
        return 0
    if (args.reference / "dfine_n_nc80_forward.pt").is_file():
        _in_subprocess(args, "--_fixture")
    print(f"\n## Every size: official random init + N(0, 0.02) noise, random {args.image}x{args.image} "
          "image, official vs ours\n")
    print("| size | params | encoder outputs | logits (max abs) | boxes (max abs) | training mode (max abs) |")
    print("|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        _in_subprocess(args, "--_size", size)
    if args.dfine_seg_repo is not None:
        print("\n## Mask head vs upstream D-FINE-seg's MaskDecoder + mask MLP (noised init, random PAN "
              "features and 300 query states)\n")
        print("| size, input | mask head params | stride-4 features | mask logits (max abs) |")
        print("|---|---|---|---|", flush=True)
        _in_subprocess(args, "--_mask", "--dfine-seg-repo", str(args.dfine_seg_repo))
    if args.losses:
        seg = ["--dfine-seg-repo", str(args.dfine_seg_repo)] if args.dfine_seg_repo is not None else []
        cmd = [sys.executable, str(REPO / "benchmarks" / "loss_parity.py"), "--dfine-repo",
               str(args.dfine_repo), *seg, "--threads", str(args.threads)]
        return subprocess.run(cmd, check=False).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
