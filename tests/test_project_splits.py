"""Splits: seeded, stable when images are added, grouped without leakage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.project import Project


def _touch(p: Project, names: list[str]) -> None:
    for n in names:
        f = p.image_dir / n
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")  # splits never decode images


def _set(p: Project, old: str, new: str) -> Project:
    p.config_path.write_text(p.config_path.read_text().replace(old, new, 1))
    return Project.open(p.root)


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p", ["a"], "segment")


def _oracle(seed: int, key: str, frac: float) -> str:
    """Independent re-statement of the documented rule: sha256('<seed>:<key>') as a fraction."""
    u = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16], 16) / 2**64
    return "val" if u < frac else "train"


def test_split_matches_documented_hash_rule_and_fraction(proj):
    names = [f"img_{i:04d}.jpg" for i in range(500)]
    _touch(proj, names)
    assign = proj.write_splits()
    assert all(assign[n] == _oracle(0, f"image:{n}", 0.2) for n in names)
    n_val = sum(s == "val" for s in assign.values())
    assert 70 <= n_val <= 130  # 500 x 0.2 = 100, binomial sd ~ 9
    val = (proj.splits_dir / "val.txt").read_text().splitlines()
    train = (proj.splits_dir / "train.txt").read_text().splitlines()
    assert sorted(val + train) == names and not set(val) & set(train)
    assert [p.name for p in proj.split_images("val")] == sorted(val)


def test_deterministic_and_seed_dependent(proj, tmp_path):
    _touch(proj, [f"{i}.png" for i in range(200)])
    a = proj.compute_splits(reset=True)
    assert a == proj.compute_splits(reset=True)
    p1 = _set(proj, "  seed: 0\n  # Keep", "  seed: 1\n  # Keep")
    assert p1.config.split.seed == 1
    assert p1.compute_splits(reset=True) != a


def test_adding_images_never_moves_old_ones(proj):
    _touch(proj, [f"old_{i}.png" for i in range(100)])
    before = proj.write_splits()
    _touch(proj, [f"new_{i}.png" for i in range(300)])
    after = proj.write_splits()
    assert all(after[k] == v for k, v in before.items())
    # even without the split files, the hash alone gives the same answer
    for f in proj.splits_dir.iterdir():
        f.unlink()
    fresh = proj.compute_splits()
    assert all(fresh[k] == v for k, v in before.items())


def test_manual_moves_in_split_files_are_kept(proj):
    _touch(proj, [f"{i}.png" for i in range(20)])
    assign = proj.write_splits()
    moved = next(k for k, v in assign.items() if v == "train")
    train = [l for l in (proj.splits_dir / "train.txt").read_text().splitlines() if l != moved]
    (proj.splits_dir / "train.txt").write_text("\n".join(train) + "\n")
    (proj.splits_dir / "val.txt").write_text((proj.splits_dir / "val.txt").read_text() + moved + "\n")
    assert proj.compute_splits()[moved] == "val"
    assert proj.compute_splits(reset=True)[moved] == "train"


def test_pattern_groups_never_leak(proj):
    names = [f"batch{g:02d}_{i:03d}.jpg" for g in range(40) for i in range(5)]
    _touch(proj, names)
    p = _set(proj, "group_by: none", "group_by: pattern")
    assign = p.write_splits()
    sides: dict[str, set] = {}
    for n, s in assign.items():
        sides.setdefault(n.split("_")[0], set()).add(s)
    assert all(len(v) == 1 for v in sides.values())
    assert {g for g, v in sides.items() if v == {"val"}} == {
        g for g in sides if _oracle(0, f"group:{g}", 0.2) == "val"}
    assert p.group_of("batch07_003.jpg") == "batch07"
    # a new image of an already-placed group joins its group's side
    _touch(p, ["batch03_999.jpg"])
    assert p.compute_splits()["batch03_999.jpg"] == assign["batch03_000.jpg"]


def test_csv_groups(proj):
    _touch(proj, ["x1.jpg", "x2.jpg", "sub/y1.jpg", "z.jpg"])
    (proj.root / "groups.csv").write_text("image,group\nx1.jpg,A\nx2.jpg,A\nsub/y1.jpg,B\n", encoding="utf-8")
    p = _set(proj, "group_by: none", "group_by: csv")
    assert [p.group_of(n) for n in ["x1.jpg", "x2.jpg", "sub/y1.jpg", "z.jpg"]] == ["A", "A", "B", None]
    a = p.compute_splits()
    assert a["x1.jpg"] == a["x2.jpg"] == _oracle(0, "group:A", 0.2)
    from PIL import Image

    Image.new("RGB", (8, 6)).save(p.image_dir / "x2.jpg", format="PNG")
    assert p.load_annotation(p.image_dir / "x2.jpg").group_id == "A"  # reaches the annotation too
    (proj.root / "groups.csv").write_text("image,group\nx1.jpg\n")
    with pytest.raises(ConfigError, match=r"groups.csv:2: expected `image,group`"):
        Project.open(p.root).group_of("x1.jpg")


def test_invalid_split_settings(proj):
    with pytest.raises(ConfigError, match="split.val_fraction: must be < 1, got 1.5"):
        _set(proj, "val_fraction: 0.2", "val_fraction: 1.5")
    proj.config_path.write_text(proj.config_path.read_text().replace("val_fraction: 1.5", "val_fraction: 0.2"))
    with pytest.raises(ConfigError, match="split.group_pattern: not a valid regular expression"):
        _set(proj, r"group_pattern: '^(.+?)_\d+$'", "group_pattern: '(unclosed'")
