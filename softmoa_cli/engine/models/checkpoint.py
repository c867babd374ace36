"""What every checkpoint format shares: the loaded result (``Pretrained``), reading tensors
safely, and copying them into a backbone through an explicit key map that fails listing every
missing, unexpected or mis-shaped tensor. Untrusted files load only through safetensors or
``torch.load(weights_only=True)``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..task import Task
from .backbone import Backbone


@dataclass
class Pretrained:
    """A loaded backbone with what the checkpoint says about its outputs (``labels``, ``task``:
    a classifier's; a backbone without a head has none). ``method``: the config
    (as JSON) of the PETL modules injected into ``model``, None for a plain backbone. ``extra``:
    ``has_head`` and, from a Hugging Face folder's ``preprocessor_config.json``, ``features``
    (the front-end settings, ``data.features.FeatureConfig``'s fields)."""

    model: Backbone
    labels: list[str]
    task: Task
    source: str
    extra: dict = field(default_factory=dict)
    method: dict | None = None


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or PyTorch file, by name (a ``state_dict`` entry unwrapped)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read weights ({str(error).splitlines()[0][:200]}); "
                              "is it a complete safetensors or PyTorch file?") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def apply_key_map(model: Backbone, state: dict[str, torch.Tensor], key_map: dict[str, str], source: str) -> None:
    """Copy ``state[theirs]`` into ``model[ours]`` for each ``ours: theirs`` of ``key_map``; fail
    listing every missing, unexpected (in ``state`` but not in the map) or mis-shaped tensor."""
    ours = model.state_dict()
    missing = [theirs for theirs in key_map.values() if theirs not in state]
    unexpected = sorted(set(state) - set(key_map.values()))
    shapes = [f"{theirs} {tuple(state[theirs].shape)} vs {tuple(ours[name].shape)}"
              for name, theirs in key_map.items()
              if theirs in state and tuple(state[theirs].shape) != tuple(ours[name].shape)]
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
            problems.append(f"{len(items)} {title} tensor(s): {shown}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the {type(model).__name__} model ({'; '.join(problems)})")
    with torch.no_grad():
        for name, theirs in key_map.items():
            ours[name].copy_(state[theirs].to(ours[name].dtype))


INDEX = re.compile(r"\.(\d+)(?=\.)")


def renamed_key_map(model: Backbone, modules: dict[str, str], with_head: bool) -> dict[str, str]:
    """Our tensor names -> the checkpoint's, for every tensor of ``model`` (those of its ``head``
    only ``with_head``: else the head keeps its initial weights), through ``modules``: our module
    (or tensor) name -> theirs, ``#`` standing for a block or layer index
    (``{"blocks.#.attn.q": "encoder.layers.#.self_attn.q_proj"}``); the tensor's own name
    (``weight``, ``bias``) is kept. A tensor with no entry is a KeyError: the table is the code's."""
    key_map = {}
    for name in model.state_dict():
        if name.startswith("head.") and not with_head:
            continue
        found = INDEX.search(name)
        pattern = INDEX.sub(".#", name, count=1)
        module, _, tensor = pattern.rpartition(".")
        theirs = modules[pattern] if pattern in modules else f"{modules[module]}.{tensor}"
        key_map[name] = theirs.replace("#", found.group(1)) if found else theirs
    return key_map


def without_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` taken off the names that start with it."""
    return {name.removeprefix(prefix): tensor for name, tensor in state.items()}


def dropped(state: dict[str, torch.Tensor], unused: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``state`` without the tensors named ``unused`` or under them (``"decoder"``: every
    ``decoder.*``): parts of a checkpoint an encoder never runs, left out on purpose; any other
    unknown tensor is still refused by ``apply_key_map``."""
    return {name: tensor for name, tensor in state.items()
            if not any(name == u or name.startswith(u + ".") for u in unused)}


def hf_labels(config: dict) -> list[str]:
    """A transformers ``config.json``'s labels in class order (``id2label``)."""
    id2label = config.get("id2label") or {}
    return [id2label.get(str(i), id2label.get(i, f"LABEL_{i}")) for i in range(len(id2label))]
