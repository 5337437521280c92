"""The full memory benchmark (1,000 1920x1080 images x 50+50 masks, RSS growth < 500 MB); ~1 min."""

import pytest


@pytest.mark.slow
def test_eval_memory_benchmark_passes(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_memory.py"
    spec = importlib.util.spec_from_file_location("eval_memory", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([]) == 0, capsys.readouterr().out
