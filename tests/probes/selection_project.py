"""The project tests/probes/real_window_selection.sh labels: a box, a triangle and one proposal."""
import sys

import cv2
import numpy as np

from core.annotation import ImageAnnotation, Instance
from core.project import Project

p = Project.create(sys.argv[1], ["cat", "dog", "car"], "segment")
for i in range(2):
    img = np.full((240, 320, 3), 70, np.uint8)
    img[..., 1] = np.linspace(40, 200, 320, dtype=np.uint8)[None]
    cv2.rectangle(img, (20, 20), (100, 100), (230, 230, 230), -1)
    cv2.fillPoly(img, [np.array([[150, 40], [250, 40], [200, 150]], np.int32)], (40, 40, 220))
    cv2.imwrite(str(p.image_dir / f"img_{i}.png"), img)
    p.save_annotation(ImageAnnotation(p.image_dir / f"img_{i}.png", 320, 240, [
        Instance(0, box=(20.0, 20.0, 100.0, 100.0)), Instance(1, polygons=[[[150, 40], [250, 40], [200, 150]]])]))
p.add_proposals(p.image_dir / "img_0.png", [Instance(2, box=(240.0, 170.0, 300.0, 230.0), score=0.8)])
