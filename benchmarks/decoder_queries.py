"""Accuracy of a trained model with fewer decoder queries at inference (issue #16's lever).

The encoder's top-k picks the decoder's queries, so their number can change after training
(``model.decoder.num_queries``); benchmarks/anchor_yolo26.py measures what it saves in time
(lite INT8 at S/640: 300 -> 100 queries, 262 -> 215 ms). This measures what it costs in accuracy:
the same checkpoint evaluated on a project's split by `dfine val`'s evaluator (paper rules: F1 at
the project's conf, mask/box mAP), once per query count.

    .venv/bin/python benchmarks/decoder_queries.py --weights <project>/runs/<run>/best.pt --project <project> \\
        --queries 300,200,100,50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def evaluate_with_queries(weights: Path, project_dir: Path, queries: list[int], split: str = "val",
                          conf: float | None = None) -> list[dict]:
    """One row per query count: the val metrics of ``weights`` with that many decoder queries."""
    from core.eval.validate import load_val_items, validate_predictor
    from core.infer.checkpoint_loader import meta_from_info
    from core.infer.predictor import Predictor
    from core.model.checkpoint import load_trained_model
    from core.project import Project

    project = Project.open(project_dir)
    model, info, _ = load_trained_model(weights, use_ema=True)
    model.eval()
    trained = model.decoder.num_queries
    items = load_val_items(project, project.split_images(split), info.task)
    conf = project.config.infer.conf if conf is None else conf
    rows = []
    for q in queries:
        if q > trained:
            raise SystemExit(f"--queries {q}: the model was trained with {trained}; more cannot be selected")
        model.decoder.num_queries = q
        t0 = time.perf_counter()
        meta = meta_from_info(info, weights)
        meta.top_k = min(meta.top_k, q * len(info.class_names))
        summary = validate_predictor(Predictor.from_module(model, meta, conf=conf), items, conf)
        head = summary.headline().model_dump()
        rows.append({"queries": q, "images": summary.images, "conf": conf, "seconds": time.perf_counter() - t0,
                     **{k: float(head[k]) for k in ("f1", "precision", "recall", "mask_map50", "mask_map",
                                                     "box_map50") if head[k] is not None}})
    model.decoder.num_queries = trained
    return rows


def markdown(rows: list[dict]) -> str:
    base = rows[0]
    out = ["| decoder queries | F1 | P | R | mask mAP50 | mask mAP | box mAP50 | F1 vs first | mask mAP50 vs first |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['queries']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                   f"{r['mask_map50']:.3f} | {r['mask_map']:.3f} | {r.get('box_map50', float('nan')):.3f} | "
                   f"{r['f1'] - base['f1']:+.3f} | {r['mask_map50'] - base['mask_map50']:+.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="a trained checkpoint (runs/<name>/best.pt)")
    p.add_argument("--project", type=Path, required=True, help="its project (the split is evaluated)")
    p.add_argument("--queries", default="300,200,100,50", help="comma-separated, the trained count first")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--conf", type=float, help="F1 threshold (default: the project's infer.conf)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    rows = evaluate_with_queries(a.weights, a.project, [int(q) for q in a.queries.split(",") if q], a.split, a.conf)
    print(f"{a.weights}: {rows[0]['images']} {a.split} images, conf {rows[0]['conf']:g}")
    print(markdown(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
