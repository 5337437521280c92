"""What an INT8 OpenVINO IR records about its quantization (NNCF settings, calibration CPU),
written at export and read by the runner at load time: the runner warns when an IR quantized
without the all-layer overflow fix runs on a CPU without VNNI/AMX."""

from __future__ import annotations

from core import cpu_isa

RT_INFO_ROOT = "dfine_int8"


def record_int8_info(model, info: dict) -> None:
    """Store the quantization settings and the calibration CPU in the IR (read back at load time)."""
    import json

    model.set_rt_info(json.dumps({k: info[k] for k in ("overflow_fix", "nncf_version", "cpu")}), [RT_INFO_ROOT])


def read_int8_info(model) -> dict | None:
    """What ``record_int8_info`` stored, or None (a float IR, or one made before it existed)."""
    import json

    try:
        if not model.has_rt_info([RT_INFO_ROOT]):
            return None
        return json.loads(model.get_rt_info([RT_INFO_ROOT]).astype(str))
    except (RuntimeError, ValueError, TypeError):
        return None


def int8_portability_warning(info: dict | None, here=None) -> str | None:
    """A warning when an INT8 IR quantized without the all-layer overflow fix runs on a CPU with no
    int8 dot-product instruction (VNNI/AMX): there its multiply-adds can saturate."""

    if not info or info.get("overflow_fix") == "enable":
        return None
    here = here or cpu_isa.detect()
    if here.int8_dot_product:
        return None
    made_on = (info.get("cpu") or {}).get("label", "an unknown CPU")
    return (f"this INT8 model was quantized on {made_on} with overflow_fix={info.get('overflow_fix')!r}; this "
            f"CPU ({here.label}) has no VNNI, so its int8 products can saturate and accuracy drop: re-export "
            "it here or with export.int8_overflow_fix: enable")
