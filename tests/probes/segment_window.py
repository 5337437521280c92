"""The real main window on the X display of tests/probes/real_window_segment.sh (issue #31: tools I
and S): a project with a light square and a red triangle, a tiny SAM pair of the real signature in
a temporary weights cache; writes the screen coordinates of the scene points the driver clicks,
and every status message to a log."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the ONNX fixtures

import cv2
import numpy as np
from PySide6.QtCore import QTimer

root, out = Path(sys.argv[1]), Path(sys.argv[2])
os.environ["DFINE_WEIGHTS_DIR"] = str(out.parent / "weights")

import sam_onnx_fixtures as fx  # noqa: E402

from probe_window import open_probe_window  # noqa: E402

from core.project import Project  # noqa: E402
from core.weights.sam_registry import find_sam, sam_files  # noqa: E402

entry = find_sam("mobile_sam")
for part, path in sam_files(entry, Path(os.environ["DFINE_WEIGHTS_DIR"])).items():
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fx.sam_encoder() if part == "encoder" else fx.sam_decoder())
p = Project.create(root, ["cat", "dog", "car"], "segment")
img = np.full((240, 320, 3), 70, np.uint8)
img[..., 1] = np.linspace(40, 200, 320, dtype=np.uint8)[None]
cv2.rectangle(img, (20, 20), (100, 100), (230, 230, 230), -1)
cv2.fillPoly(img, [np.array([[150, 40], [250, 40], [200, 150]], np.int32)], (40, 40, 220))
cv2.imwrite(str(p.image_dir / "img_0.png"), img)

# scissors anchors a few px off the triangle's corners; a stray point (undone); the SAM click
POINTS = {"a": (147, 37), "b": (253, 38), "c": (200, 154), "stray": (290, 220), "sam": (60, 60)}
app, win = open_probe_window(root, out, POINTS)


def anchors_now() -> None:  # the driver reads the anchor count after each step
    (out.parent / "anchors.txt").write_text(str(len(win.scissors.anchors)))
    QTimer.singleShot(100, anchors_now)


QTimer.singleShot(500, anchors_now)
app.exec()
