"""Evaluation: fixed-threshold F1/P/R/IoU (paper rules), F1-vs-threshold, COCO mAP, RLE masks.

Entry point: :class:`core.eval.evaluator.Evaluator` (streaming, image by image).
"""
