"""Issue #34: one converter. The GUI's File > Export / Import (app.transfer, in a worker) and
`dfine convert` / `dfine import` run the same engine (core.convert) and write the same bytes,
with the same refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.transfer import export_project, import_into
from core.cli import main
from core.convert import CONVERT_KINDS
from core.errors import UserFacingError
from core.project import Project


class _Task:
    """What app.workers hands the body: progress and a cancel flag."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.calls: list[tuple[int, int, str]] = []
        self.cancel_after = cancel_after

    def progress(self, done: int, total: int, text: str = "") -> None:
        self.calls.append((done, total, text))

    @property
    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.calls) >= self.cancel_after


def _tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(skip)}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    from core.demo import make_demo_project

    return Project.open(make_demo_project(tmp_path_factory.mktemp("conv") / "demo"))


@pytest.mark.parametrize("kind", CONVERT_KINDS)
def test_gui_export_writes_the_bytes_dfine_convert_writes(project, tmp_path, kind):
    out = tmp_path / "out"  # the same folder for both: a path written into a file is the same too
    assert main(["convert", str(project.root), kind, str(out)]) == 0
    by_cli = _tree(out)
    shutil.rmtree(out)
    task = _Task()
    text = export_project(task, project, kind, out)
    assert _tree(out) == by_cli and len(by_cli) > 2
    if kind != "yolo":  # COCO / labelme reference images: they are copied beside the labels
        assert sum(name.endswith(".jpg") for name in by_cli) == len(project.image_paths())
    if kind == "labelme":  # beside_images: <image>.json next to each copied image
        assert all(f"{name[:-4]}.json" in by_cli for name in by_cli if name.endswith(".jpg"))
    assert text.startswith(f"exported {len(project.image_paths())} images") and task.calls


def test_gui_export_refuses_the_project_folder_as_the_cli_does(project, capsys):
    with pytest.raises(UserFacingError, match="is the project itself") as gui:
        export_project(None, project, "coco", project.root)
    assert main(["convert", str(project.root), "coco", str(project.root)]) != 0
    assert str(gui.value) in capsys.readouterr().err


def test_gui_export_cancelled_writes_nothing(project, tmp_path):
    assert export_project(_Task(cancel_after=1), project, "coco", tmp_path / "out") == "cancelled"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["coco", "labelme", "yolo"])
def test_gui_import_writes_the_bytes_dfine_import_writes(project, tmp_path, kind):
    source = tmp_path / "source"
    assert main(["convert", str(project.root), kind, str(source)]) == 0
    arg = {"coco": source / "annotations" / "instances_train.json", "labelme": source, "yolo": source}[kind]
    target = tmp_path / "imported"  # the same folder for both
    assert main(["import", kind, str(arg), str(target)]) == 0
    by_cli = _tree(target, skip=(".dfine/",))
    shutil.rmtree(target)
    text = import_into(_Task(), target, kind, arg)
    assert _tree(target, skip=(".dfine/",)) == by_cli
    assert sum(name.startswith("labels/") for name in by_cli) > 2 and text.startswith("imported ")
