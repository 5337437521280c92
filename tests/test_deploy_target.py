"""Issue #34: where the model will run (GPU / CPU) sets model.mask_head and export.queries in
project.yaml, comments kept; a checkpoint's meta records its mask head."""

from __future__ import annotations

from core.project import DEPLOY_TARGETS, Project


def test_cpu_and_back_edits_two_values_and_keeps_every_comment(tmp_path):
    project = Project.create(tmp_path / "p", ["a", "b"], "segment")
    before = project.config_path.read_text(encoding="utf-8")
    assert project.deploy_target == "gpu"
    project.set_deploy_target("cpu")
    assert project.deploy_target == "cpu"
    assert (project.config.model.mask_head, project.config.export.queries) == DEPLOY_TARGETS["cpu"] == ("cpu", 100)
    changed = [(a, b) for a, b in zip(before.splitlines(), project.config_path.read_text().splitlines()) if a != b]
    assert changed == [("  mask_head: paper", "  mask_head: cpu"), ("  queries: null", "  queries: 100")]
    project.set_deploy_target("gpu")
    assert project.config_path.read_text(encoding="utf-8") == before
    assert Project.open(project.root).deploy_target == "gpu"


def test_meta_of_a_checkpoint_records_its_mask_head():
    from core.infer.checkpoint_loader import meta_from_info
    from core.infer.meta import ModelMeta
    from core.model.checkpoint import CheckpointInfo

    meta = meta_from_info(CheckpointInfo(("a",), "segment", "n", (256, 256), "cpu"), "x.pt")
    assert meta.mask_head == "cpu" and ModelMeta.from_dict(__import__("json").loads(meta.to_json())).mask_head == "cpu"
    assert meta_from_info(CheckpointInfo(("a",), "detect", "n", (256, 256), "paper"), "x.pt").mask_head == ""


def test_a_project_created_for_cpu_has_the_cpu_pick_from_the_start(tmp_path):
    from core.cli import main

    made = Project.create(tmp_path / "p", ["a"], "segment", deploy_target="cpu")
    assert made.deploy_target == "cpu"
    assert (made.config.model.mask_head, made.config.export.queries) == ("cpu", 100)
    assert main(["new", str(tmp_path / "q"), "--classes", "a", "--runs-on", "cpu"]) == 0
    assert (tmp_path / "q" / "project.yaml").read_text() == made.config_path.read_text()
    gpu = Project.create(tmp_path / "g", ["a"], "segment")  # the template's pick
    assert (gpu.config.model.mask_head, gpu.config.export.queries) == ("paper", None)
