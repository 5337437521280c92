"""A proposal is not a label (#32): model output lives in proposals/ until a person accepts it,
and no reader of the project (training data, splits, format export, analysis, eval) takes it
for a label. Projects whose sidecars marked model rows are migrated once, losing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.cli import main
from core.data.formats.yolo_txt import format_yolo_txt, sidecar_path
from core.project import Project
from core.proposals import proposals_path, read_proposals

W, H = 64, 48
LABEL = np.array([[4.0, 4.0], [30.0, 4.0], [30.0, 30.0], [4.0, 30.0]])
PROPOSAL = np.array([[40.0, 10.0], [60.0, 10.0], [60.0, 40.0]])


def _label() -> Instance:
    return Instance(0, polygons=[LABEL.copy()])


def _proposal(cid: int = 1, score: float = 0.9) -> Instance:
    return Instance(cid, polygons=[PROPOSAL.copy()], source="model", score=score)


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "p", ["cat", "dog", "bird"], "segment")
    for stem in ("a", "b", "c", "d"):
        Image.new("RGB", (W, H), (90, 90, 90)).save(p.image_dir / f"{stem}.png")
        p.save_annotation(ImageAnnotation(p.image_dir / f"{stem}.png", W, H, [_label(), _proposal()]))
    return p


def test_labels_folder_holds_only_accepted_rows(proj):
    for stem in ("a", "b", "c", "d"):
        rows = proj.label_path(proj.image_dir / f"{stem}.png").read_text().splitlines()
        assert [r.split()[0] for r in rows] == ["0"]  # any YOLO tool reading labels/ sees only the label
        assert not sidecar_path(proj.label_path(proj.image_dir / f"{stem}.png")).exists()
        stored = read_proposals(proj, proj.image_dir / f"{stem}.png")
        assert len(stored) == 1 and stored[0].class_id == 1 and stored[0].score == pytest.approx(0.9)
        np.testing.assert_allclose(stored[0].polygons[0], PROPOSAL)


def test_load_returns_labels_and_only_the_editor_asks_for_proposals(proj):
    img = proj.image_dir / "a.png"
    assert [i.class_id for i in proj.load_annotation(img).instances] == [0]
    both = proj.load_annotation(img, include_proposals=True)
    assert [(i.class_id, i.source) for i in both.instances] == [(0, "human"), (1, "model")]
    anns, errors = proj.load_all()
    assert not errors and all([i.class_id for i in a.instances] == [0] for a in anns)


def test_editor_save_replaces_proposals_and_accepting_moves_one_into_labels(proj):
    img = proj.image_dir / "a.png"
    ann = proj.load_annotation(img, include_proposals=True)
    ann.instances[1].source, ann.instances[1].score = "human", None  # accepted
    proj.save_annotation(ann)
    assert [r.split()[0] for r in proj.label_path(img).read_text().splitlines()] == ["0", "1"]
    assert read_proposals(proj, img) == [] and not proposals_path(proj, img).exists()
    # a tool adding proposals (pre-label, live send frame) appends to what is stored, labels untouched
    assert proj.add_proposals(img, [_proposal(2)]) == 1
    assert proj.add_proposals(img, [Instance(0, box=(1.0, 2.0, 9.0, 9.0), score=0.7)]) == 2
    assert [(p.class_id, p.source) for p in read_proposals(proj, img)] == [(2, "model"), (0, "model")]
    assert [r.split()[0] for r in proj.label_path(img).read_text().splitlines()] == ["0", "1"]


def test_proposals_alone_leave_the_image_unlabelled(proj):
    Image.new("RGB", (W, H)).save(proj.image_dir / "new.png")
    proj.save_annotation(ImageAnnotation(proj.image_dir / "new.png", W, H, [_proposal()]))  # as live send frame
    assert not proj.label_path(proj.image_dir / "new.png").exists()  # not "checked: background"
    assert len(read_proposals(proj, proj.image_dir / "new.png")) == 1


def test_training_dataset_uses_only_labels(proj):
    from core.data.dataset import SegmentationDataset

    ds = SegmentationDataset(proj.image_paths(), proj.load_annotation, 3, 64)
    _, target, bad = ds[0]
    assert not bad and target["labels"].tolist() == [0]


@pytest.mark.parametrize("fmt", ["yolo", "coco", "labelme"])
def test_format_export_uses_only_labels(proj, tmp_path, capsys, fmt):
    out = tmp_path / f"out_{fmt}"
    assert main(["convert", str(proj.root), fmt, str(out)]) == 0, capsys.readouterr().err
    text = "".join(p.read_text() for p in sorted(out.rglob("*")) if p.suffix in (".txt", ".json") and p.is_file())
    if fmt == "yolo":
        rows = [r for p in sorted(out.rglob("*.txt")) if p.name != "classes.txt" for r in p.read_text().splitlines()]
        assert rows and {r.split()[0] for r in rows} == {"0"}
    elif fmt == "coco":
        docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
        anns = [a for d in docs for a in d["annotations"]]
        cat = {c["id"] for d in docs for c in d["categories"] if c["name"] == "cat"}
        assert len(anns) == 4 and {a["category_id"] for a in anns} == cat
    else:
        shapes = [s for p in out.rglob("*.json") for s in json.loads(p.read_text())["shapes"]]
        assert len(shapes) == 4 and {s["label"] for s in shapes} == {"cat"}
    assert "model" not in text


def test_split_statistics_and_check_count_only_labels(proj, capsys):
    assert main(["check", str(proj.root)]) == 0
    out = capsys.readouterr().out
    assert "4 images ok, 4 instances" in out


def test_eval_items_use_only_labels(proj):
    from core.eval.validate import load_val_items

    items = load_val_items(proj, proj.split_images("train") + proj.split_images("val"), "segment")
    assert len(items) == 4 and all(list(np.asarray(it.gt.labels)) == [0] for it in items)


def test_analysis_reads_only_labels(proj):
    import argparse

    from core.analysis.cli import _load_annotations

    anns = _load_annotations(proj, argparse.Namespace(), lambda *a, **k: None)
    assert sum(len(a.instances) for a in anns) == 4 and {i.class_id for a in anns for i in a.instances} == {0}


def test_class_edits_keep_proposals_meaning_the_same_class_and_undo_restores_them(proj):
    img = proj.image_dir / "a.png"
    proj.add_proposals(img, [_proposal(2)])  # a bird proposal too
    proj.delete_class("cat")  # dog 1 -> 0, bird 2 -> 1
    assert [p.class_id for p in read_proposals(proj, img)] == [0, 1]
    proj.delete_class("dog")  # its proposals go with it
    assert [p.class_id for p in read_proposals(proj, img)] == [0]
    proj.undo_class_edit()
    proj.undo_class_edit()
    assert proj.class_names == ["cat", "dog", "bird"]
    assert [p.class_id for p in read_proposals(proj, img)] == [1, 2]


# ----------------------------------------------------------------------------- migration


def _old_style_project(tmp_path: Path) -> Project:
    """What the previous code wrote: model rows inside labels/*.txt, marked only in the sidecar."""
    p = Project.create(tmp_path / "old", ["cat", "dog"], "segment")
    for stem in ("a", "b"):
        Image.new("RGB", (W, H)).save(p.image_dir / f"{stem}.png")
        other = Instance(0, polygons=[PROPOSAL - 5.0], source="model", score=0.4)
        out = format_yolo_txt([_label(), _proposal(), other], W, H)
        lp = p.label_path(p.image_dir / f"{stem}.png")
        lp.write_text(out.text)
        sidecar_path(lp).write_text(json.dumps(out.sidecar))
    Image.new("RGB", (W, H)).save(p.image_dir / "plain.png")
    p.label_path(p.image_dir / "plain.png").write_text("1 0.5 0.5 0.2 0.2\n")
    return p


def test_old_projects_are_migrated_once_without_losing_a_line(tmp_path):
    old = _old_style_project(tmp_path)
    lp = old.label_path(old.image_dir / "a.png")
    assert len(lp.read_text().splitlines()) == 3
    proj = Project.open(old.root)
    for stem in ("a", "b"):
        img = proj.image_dir / f"{stem}.png"
        assert [r.split()[0] for r in proj.label_path(img).read_text().splitlines()] == ["0"]
        moved = read_proposals(proj, img)
        assert sorted((p.class_id, p.score) for p in moved) == [(0, pytest.approx(0.4)), (1, pytest.approx(0.9))]
        np.testing.assert_allclose(next(m for m in moved if m.class_id == 1).polygons[0], PROPOSAL, atol=0.05)
    assert proj.label_path(proj.image_dir / "plain.png").read_text() == "1 0.5 0.5 0.2 0.2\n"
    before = {p: p.read_bytes() for p in proj.root.rglob("*") if p.is_file() and "project.lock" not in p.name}
    Project.open(old.root)  # once: nothing changes the second time
    after = {p: p.read_bytes() for p in proj.root.rglob("*") if p.is_file() and "project.lock" not in p.name}
    assert after == before


def test_readers_never_take_an_unmigrated_model_row(tmp_path):
    old = _old_style_project(tmp_path)
    # as if the migration had not run (e.g. the project is open in an older window holding the lock)
    p = Project(old.root, old.config)
    assert [i.class_id for i in p.load_annotation(p.image_dir / "a.png").instances] == [0]
    shown = p.load_annotation(p.image_dir / "a.png", include_proposals=True)
    assert sorted(i.source for i in shown.instances) == ["human", "model", "model"]


# ----------------------------------------------------------------------------- what a tool may propose


def test_predict_and_send_frame_keep_only_what_the_model_stands_behind(proj):
    from app.prelabel import MAX_PROPOSALS_PER_IMAGE, keep_confident, proposal_floor

    assert proj.config.infer.conf == 0.5
    assert proposal_floor(proj, 0.01) == 0.5  # live view's slider at 0.01 does not lower it
    assert proposal_floor(proj, 0.7) == 0.7  # a stricter slider is kept
    rng = np.random.default_rng(0)
    many = [Instance(0, box=(1.0, 1.0, 9.0, 9.0), source="model", score=float(s)) for s in rng.uniform(0, 1, 300)]
    kept, dropped = keep_confident(many, 0.5)
    assert len(kept) == MAX_PROPOSALS_PER_IMAGE and dropped == 300 - MAX_PROPOSALS_PER_IMAGE
    assert min(i.score for i in kept) >= max(i.score for i in many if i not in kept)  # the best ones
    few, dropped = keep_confident(many[:10], 0.5)
    assert all(i.score >= 0.5 for i in few) and len(few) + dropped == 10
