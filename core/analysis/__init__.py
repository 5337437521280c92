"""Error analysis: rank likely label mistakes (missing, wrong class, bad geometry, duplicate,
spurious, out-of-image/degenerate) from labels and a model's predictions.

Entry point: :func:`core.analysis.find_mistakes.analyze`; files: :mod:`core.analysis.report`;
CLI: ``dfine analyze`` (:mod:`core.analysis.cli`).
"""
