"""The ISA-sensitive tests (marker `isa_sensitive`) again, with oneDNN (torch's and OpenVINO's) capped
at AVX2 and ATen's kernels at AVX2: on an AVX-512/VNNI/bf16 machine this runs the branch an AVX2-only
user's CPU takes (INT8 without VNNI, fp32 instead of bf16 autocast, other matmul kernels), so neither
kind of machine can pass a test the other fails. On an AVX2-only machine the suite itself already is
that branch, and the newer ISA cannot be forced upward: the test says so and skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import cpu_isa

ROOT = Path(__file__).resolve().parent.parent
FORCED_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def test_cap_lowers_what_the_engine_sees(monkeypatch):
    """The cap is honoured by our own ISA decisions too (bf16 autocast, INT8 portability)."""
    monkeypatch.setattr(cpu_isa, "_hardware_features", lambda: {"avx2", "avx512", "avx512_vnni", "avx512_bf16"})
    full = cpu_isa.detect({})
    capped = cpu_isa.detect(FORCED_AVX2)
    assert full.int8_dot_product and full.native_bf16 and full.label == "AVX-512 VNNI BF16"
    assert not capped.int8_dot_product and not capped.native_bf16 and capped.label == "AVX2"
    assert cpu_isa.detect({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}).label == "AVX-512"


@pytest.mark.skipif(os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2", reason="already the forced-AVX2 run")
def test_isa_sensitive_tests_hold_with_avx2_forced():
    here = cpu_isa.detect()
    if not (here.avx512 or here.int8_dot_product or here.native_bf16):
        pytest.skip(f"this CPU is {here.label}: the suite itself ran the AVX2 branch; the AVX-512/VNNI "
                    "branch needs such a CPU (CI machines of both kinds exist)")
    env = {**os.environ, **FORCED_AVX2, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "isa_sensitive", "-p", "no:cacheprovider",
                        "tests"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, f"ISA-sensitive tests fail with AVX2 forced on this {here.label} CPU:\n{tail}"
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) >= 8, tail
    print(f"with {FORCED_AVX2} on this {here.label} CPU: {passed.group(0)}")
