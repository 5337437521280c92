"""What the CPU's vector units can do, as oneDNN/OpenVINO will actually use them.

Two decisions depend on it: bf16 autocast in training (only with native bf16) and how INT8 is
quantized (without a VNNI dot-product instruction the int8 multiply-add saturates unless the
weights leave headroom). ``ONEDNN_MAX_CPU_ISA`` caps what oneDNN (torch's and OpenVINO's) may
use, so it is honoured here too: a test can then run the "older CPU" branch on a newer one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# oneDNN's ISA names, weakest first (its ``dnnl_cpu_isa_t`` order), and the features each allows.
_CAP_FEATURES: list[tuple[str, frozenset[str]]] = [
    ("SSE41", frozenset()),
    ("AVX", frozenset()),
    ("AVX2", frozenset({"avx2"})),
    ("AVX2_VNNI", frozenset({"avx2", "avx_vnni"})),
    ("AVX2_VNNI_2", frozenset({"avx2", "avx_vnni"})),
    ("AVX512_CORE", frozenset({"avx2", "avx_vnni", "avx512"})),
    ("AVX512_CORE_VNNI", frozenset({"avx2", "avx_vnni", "avx512", "avx512_vnni"})),
    ("AVX512_CORE_BF16", frozenset({"avx2", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16"})),
    ("AVX512_CORE_FP16", frozenset({"avx2", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16"})),
    ("AVX10_1_512", frozenset({"avx2", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16"})),
]
_ALL = frozenset({"avx2", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx"})


@dataclass(frozen=True)
class CpuIsa:
    """Vector features usable by oneDNN here (after any ``ONEDNN_MAX_CPU_ISA`` cap)."""

    avx2: bool
    avx512: bool
    avx512_vnni: bool
    avx_vnni: bool
    avx512_bf16: bool
    amx: bool
    cap: str | None = None  # ONEDNN_MAX_CPU_ISA when set

    @property
    def int8_dot_product(self) -> bool:
        """VNNI (AVX-512 or AVX) or AMX: int8 products accumulate in int32 without saturating."""
        return self.avx512_vnni or self.avx_vnni or self.amx

    @property
    def native_bf16(self) -> bool:
        """AVX512-BF16 or AMX: bf16 convs/matmuls run natively (plain AVX-512 only emulates them)."""
        return self.avx512_bf16 or self.amx

    @property
    def label(self) -> str:
        """Short class name for reports and warnings, e.g. 'AVX-512 VNNI BF16' or 'AVX2'."""
        if self.amx:
            return "AMX"
        if self.avx512:
            return "AVX-512" + (" VNNI" if self.avx512_vnni else "") + (" BF16" if self.avx512_bf16 else "")
        if self.avx2:
            return "AVX2" + (" VNNI" if self.avx_vnni else "")
        return "pre-AVX2"

    def as_dict(self) -> dict:
        return {**asdict(self), "int8_dot_product": self.int8_dot_product,
                "native_bf16": self.native_bf16, "label": self.label}


def _linux_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def _hardware_features() -> set[str]:
    """Features the silicon has: /proc/cpuinfo on Linux, torch's cpuinfo probes elsewhere."""
    flags = _linux_flags()
    if flags is not None:
        found = {"avx2"} & flags
        if "avx512f" in flags and "avx512bw" in flags:
            found.add("avx512")
        found |= {name for name in ("avx512_vnni", "avx_vnni", "avx512_bf16") if name in flags}
        if "amx_tile" in flags:
            found.add("amx")
        return found
    import torch

    probes = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported",
              "avx512_vnni": "_is_vnni_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "amx": "_is_amx_tile_supported"}
    found = set()
    for name, probe in probes.items():
        try:
            if hasattr(torch.cpu, probe) and getattr(torch.cpu, probe)():
                found.add(name)
        except RuntimeError:
            pass
    return found


def allowed_by_cap(cap: str | None) -> frozenset[str]:
    """Features oneDNN may use under ``ONEDNN_MAX_CPU_ISA=cap`` (unknown or ALL: no cap)."""
    if not cap:
        return _ALL
    for name, features in _CAP_FEATURES:
        if name == cap.strip().upper():
            return features
    return _ALL


def detect(env: Mapping[str, str] | None = None) -> CpuIsa:
    """This machine's usable features; ``env`` defaults to os.environ (read for the cap)."""
    env = os.environ if env is None else env
    cap = env.get("ONEDNN_MAX_CPU_ISA") or None
    usable = _hardware_features() & allowed_by_cap(cap)
    return CpuIsa(avx2="avx2" in usable, avx512="avx512" in usable, avx512_vnni="avx512_vnni" in usable,
                  avx_vnni="avx_vnni" in usable, avx512_bf16="avx512_bf16" in usable, amx="amx" in usable,
                  cap=cap)
