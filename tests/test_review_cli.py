"""`dfine review`: the Review panel's actions headless (core.analysis.review.Review), with
decisions and undo that survive across processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.analysis.review import Review
from core.cli import main
from core.errors import UserFacingError
from review_data import make_project, write_issues

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    proj = make_project(tmp_path)
    write_issues(proj)
    return proj


def classes(proj, name: str) -> list[int]:
    return [i.class_id for i in proj.load_annotation(proj.image_dir / name).instances]


def dfine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_list_shows_ranked_open_items(project, capsys):
    assert main(["review", str(project.root), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("#1") and "wrong_class" in out[0] and "b.png" in out[0] and "[Change the class]" in out[0]
    assert [line.split()[0] for line in out[:4]] == ["#1", "#2", "#3", "#4"]
    assert out[-1] == "4 open, 0 decided"
    assert main(["review", str(project.root), "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0]["decision"] is None


def test_accept_dismiss_and_undo_across_processes(project):
    assert classes(project, "b.png") == [0]
    r = dfine("review", str(project.root), "accept", "1", "2")  # set class 0 -> 1; add the missing cat
    assert r.returncode == 0, r.stderr
    assert "accepted #1: label 1: class 0 -> 1 (b.png)" in r.stdout
    assert classes(project, "b.png") == [1, 0]
    r = dfine("review", str(project.root), "dismiss", "4")
    assert r.returncode == 0, r.stderr
    decisions = json.loads((project.review_dir / "decisions.json").read_text())["decisions"]
    assert sorted(d["decision"] for d in decisions.values()) == ["accepted", "accepted", "dismissed"]

    # a fresh process: undo takes the newest accepted fix (#2, the added label), then #1
    r = dfine("review", str(project.root), "undo")
    assert r.returncode == 0 and "undone #2" in r.stdout, r.stderr
    assert classes(project, "b.png") == [1]
    r = dfine("review", str(project.root), "undo")
    assert r.returncode == 0 and "undone #1" in r.stdout, r.stderr
    assert classes(project, "b.png") == [0]
    r = dfine("review", str(project.root), "undo")
    assert r.returncode == 2 and "nothing to undo in the review" in r.stderr
    review = Review.of_project(project)
    assert [it.decision for it in review.items] == [None, None, None, "dismissed"]


def test_undo_never_overwrites_later_edits(project):
    review = Review.of_project(project)
    review.accept(review.find(1))
    ann = project.load_annotation(project.image_dir / "b.png")
    ann.instances[0].class_id = 0  # the person edits the file again after the fix
    project.save_annotation(ann)
    with pytest.raises(UserFacingError, match="edited after the fix"):
        Review.of_project(project).undo()
    assert classes(project, "b.png") == [0]
    assert Review.of_project(project).items[0].decision == "accepted"


def test_reopen_and_bad_references(project, capsys):
    review = Review.of_project(project)
    it = review.find("#3")
    review.dismiss(it)
    with pytest.raises(UserFacingError, match="already dismissed"):
        review.dismiss(it)
    assert main(["review", str(project.root), "reopen", it.key[:8]]) == 0
    assert Review.of_project(project).items[2].is_open
    assert main(["review", str(project.root), "accept", "9"]) == 2
    assert "no item #9 in the review (it has 4)" in capsys.readouterr().err
    assert main(["review", str(project.root), "accept"]) == 2
    assert "give the item(s)" in capsys.readouterr().err
    assert main(["review", str(project.root), "reopen", "1"]) == 2
    assert "not dismissed (open)" in capsys.readouterr().err
    # an item that matches nothing changes nothing, even when listed with a good one
    assert main(["review", str(project.root), "dismiss", "1", "zzzz"]) == 2
    assert Review.of_project(project).items[0].is_open


def test_no_analysis_and_damaged_files_are_clear(tmp_path, capsys):
    proj = make_project(tmp_path)
    assert main(["review", str(proj.root), "list"]) == 2
    assert "no analysis to review; run `dfine analyze" in capsys.readouterr().err
    write_issues(proj)
    (proj.review_dir / "decisions.json").write_text('{"decisions": {"k": {"decision": "maybe", "image": "a"}}}')
    assert main(["review", str(proj.root), "dismiss", "1"]) == 2
    err = capsys.readouterr().err
    assert "decisions.json: unreadable review decisions (not review decisions: decisions.k.decision" in err
    assert (proj.review_dir / "decisions.json").read_text().startswith('{"decisions": {"k"'), "never overwritten"
    (proj.review_dir / "label_issues.json").write_text('{"issues": [{"kind": "typo", "image": "a", "box": [0,0,1,1]}]}')
    assert main(["review", str(proj.root), "list"]) == 2
    assert "label_issues.json: not a readable analysis result (not an analysis result: issues.0.kind" in \
        capsys.readouterr().err
