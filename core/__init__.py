"""dfine-studio engine: projects, data formats, the D-FINE-seg model, training, evaluation,
export and inference. Never imports Qt."""

__version__ = "0.1.0"
