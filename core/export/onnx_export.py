"""ONNX export of the deployment graph (`core.model.DeployModel`): opset >= 17, dynamic batch,
simplified with onnxslim, validated with onnx.checker, class names in the metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from core.errors import ConfigError
from core.infer.meta import ModelMeta
from core.model import DeployModel

MIN_OPSET = 17


def export_onnx(deploy: DeployModel, out_path: Path | str, meta: ModelMeta, opset: int = MIN_OPSET,
                simplify: bool = True) -> Path:
    """Trace ``deploy`` at the meta's input size and write a checked, simplified ONNX file."""
    import onnx

    if opset < MIN_OPSET:
        raise ConfigError(f"ONNX opset must be >= {MIN_OPSET} (the deploy graph needs it), got {opset}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    deploy = deploy.eval().cpu()
    h, w = meta.image_size
    # batch 2, as the official export uses a batch > 1: the decoder repeats its anchors only
    # `if batch > 1`, and a batch-1 trace would bake the unrepeated anchors into the graph
    dummy = torch.rand(2, 3, h, w)
    names = list(deploy.output_names)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(
            deploy, (dummy,), str(out_path), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=names,
            dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            do_constant_folding=True,
        )
    model = onnx.load(str(out_path))
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
    onnx.checker.check_model(model, full_check=True)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "dfine_meta", meta.to_json()
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", json.dumps(dict(enumerate(meta.class_names)))
    onnx.save(model, str(out_path))
    return out_path
