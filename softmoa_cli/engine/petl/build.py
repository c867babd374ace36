"""Building a model to train: a backbone, a new head and a PETL method."""

from __future__ import annotations

from ..models.backbone import Backbone, BackboneConfig
from ..models.families import build_backbone
from ..models.pretrained import Pretrained, load_pretrained
from .methods import MethodConfig, apply_method, method_config


def build_model(backbone: str | Pretrained | BackboneConfig, method: MethodConfig | str, num_classes: int,
                max_length: int | None = None, **method_options) -> Backbone:
    """A backbone ready to train with a PETL method.

    ``backbone``: a checkpoint path or hub id, an already loaded ``Pretrained``, or a family's
    config (``ASTConfig``, ``WhisperConfig``, ...) for a randomly initialised model. ``method``:
    a config or a method name (then ``method_options`` are its options). The head is replaced
    by a new Linear on the mean of all tokens with ``num_classes`` outputs (the PETL recipe);
    ``max_length`` adapts the position information (frames of 10 ms).
    """
    if isinstance(backbone, BackboneConfig):
        model = build_backbone(backbone)
    else:
        model = (backbone if isinstance(backbone, Pretrained) else load_pretrained(backbone)).model
    if max_length is not None and max_length != model.config.max_length:
        model.set_max_length(max_length)
    model.reset_classifier(num_classes)
    config = method if isinstance(method, MethodConfig) else method_config(method, **method_options)
    return apply_method(model, config)
