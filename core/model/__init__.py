"""D-FINE / D-FINE-seg network: `build_model(size, num_classes, task, image_size)`,
`load_weights(model, path) -> LoadReport`, `DeployModel` for export, `SIZE_CONFIGS`."""

from core.model.builder import SIZE_CONFIGS, SIZES, SizeConfig, build_model, size_config
from core.model.checkpoint import LoadReport, load_weights
from core.model.network import DeployModel, DFINEModel

__all__ = [
           "SIZES",
           "SIZE_CONFIGS",
           "DFINEModel",
           "DeployModel",
           "LoadReport",
           "SizeConfig",
           "build_model",
           "load_weights",
           "size_config",
]
