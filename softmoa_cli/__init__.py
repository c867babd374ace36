"""softmoa: parameter-efficient fine-tuning of Audio Spectrogram Transformers.

Public API (imported lazily so that the CLI's ``--help`` never loads torch)::

    from softmoa_cli import SoftMoA, DenseMoA, BottleneckAdapter, build_model, load_pretrained
    from softmoa_cli import Run, Classifier, Predictor   # a trained run, its model, predictions
"""

__version__ = "0.1.0"

_EXPORTS = {
    "SoftMoA": "softmoa_cli.engine.petl.mixtures",
    "DenseMoA": "softmoa_cli.engine.petl.mixtures",
    "BottleneckAdapter": "softmoa_cli.engine.petl.layers",
    "ConvpassAdapter": "softmoa_cli.engine.petl.layers",
    "LoRALinear": "softmoa_cli.engine.petl.lora",
    "AST": "softmoa_cli.engine.models.ast",
    "ASTConfig": "softmoa_cli.engine.models.ast",
    "load_pretrained": "softmoa_cli.engine.models.pretrained",
    "save_model": "softmoa_cli.engine.models.pretrained",
    "build_model": "softmoa_cli.engine.petl.build",
    "method_config": "softmoa_cli.engine.petl.methods",
    "apply_method": "softmoa_cli.engine.petl.methods",
    "cost": "softmoa_cli.engine.accounting",
    "FeatureConfig": "softmoa_cli.engine.data.features",
    "Run": "softmoa_cli.engine.runs.run",
    "RunMetrics": "softmoa_cli.engine.runs.results",
    "Classifier": "softmoa_cli.engine.classifier",
    "Predictor": "softmoa_cli.engine.predict",
    "task_named": "softmoa_cli.engine.task",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'softmoa_cli' has no attribute {name!r}")
