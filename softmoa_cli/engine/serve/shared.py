"""Many tasks on one frozen backbone: every task's PETL modules, norms and head around one copy of
the frozen layers, in batches that mix the tasks row by row.

A task is a run's model (a backbone with its method's modules and its head). ``SharedBackbone.add``
walks the pristine backbone and the task's model side by side:

- where the task wraps a module (a parallel or sequential adapter site around ``attn`` or
  ``mlp``, a LoRA pair beside a projection), the shared model wraps it once (``TaskSite``)
  and keeps every task's part there;
- where the task changed a LayerNorm's values (the norms that feed its adapters, the final
  norm), the shared model routes that task's rows to its copy (``TaskNorm``);
- the head is each task's own.

Anything else a task changed (the weights of a full fine-tune, a weighted layer sum, another
window length) means it does not run on this backbone: ``NotShared``. A shared model whose
frozen Linears are int8 (``quantize.quantize_frozen``) takes a task whose float Linear
quantizes to the same int8 weights.

A forward takes windows ``[b, ...]`` and each row's task. The frozen layers see the whole batch
at once; each routed module calls each task's part once on that task's rows (``Routing``
groups them), never once per row, and writes them into one copy of its output in place. A batch
of one task's rows runs its parts on the whole batch: the very arithmetic of the task's own model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.backbone import Backbone
from ..petl.lora import LoRALinear
from ..petl.sites import ParallelSite, SequentialSite
from ..quantize import is_int8, same_int8

# How a task's part joins a routed module's output ``s = base(y)`` on the task's rows:
INPUT = "input"  # s + part(y): a parallel adapter, a LoRA pair
OUTPUT = "output"  # s + part(s): a sequential adapter with its inner residual
REPLACE = "replace"  # part(s): a sequential adapter without it


class NotShared(ValueError):
    """A task whose model differs from the backbone in more than its PETL parts."""


class Routing:
    """The tasks of the current batch: ``groups``, one ``(task key, row indices [k])`` per task
    present, in order of first appearance. ``SharedBackbone.forward`` sets it; every routed
    module reads it."""

    def __init__(self):
        self.groups: list[tuple[str, torch.Tensor]] = []

    @property
    def alone(self) -> bool:
        """Whether one task holds every row of the batch (its modules then run on the whole
        batch, as in the task's own model: no rows picked out, none copied back)."""
        return len(self.groups) == 1

    def set(self, keys: list[str], device: torch.device) -> None:
        rows: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            rows.setdefault(key, []).append(row)
        self.groups = [(key, torch.tensor(found, device=device)) for key, found in rows.items()]


def _same(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold equal direct parameters and buffers (children not compared)."""
    mine = dict(a.named_parameters(recurse=False)) | dict(a.named_buffers(recurse=False))
    theirs = dict(b.named_parameters(recurse=False)) | dict(b.named_buffers(recurse=False))
    return mine.keys() == theirs.keys() and all(
        mine[name].shape == theirs[name].shape and torch.equal(mine[name], theirs[name].to(mine[name].device))
        for name in mine)


class TaskSite(nn.Module):
    """A frozen module ``base`` with each task's part: ``out = base(y)`` for every row, then on a
    task's rows its part joined as its mode says (``INPUT``, ``OUTPUT``, ``REPLACE``)."""

    def __init__(self, base: nn.Module, routing: Routing):
        super().__init__()
        self.base = base
        self.parts = nn.ModuleDict()
        self.modes: dict[str, str] = {}
        self.routing = routing

    def forward(self, y: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        s = self.base(y, *args, **kwargs)
        present = [(key, rows) for key, rows in self.routing.groups if key in self.parts]
        if not present:
            return s
        if self.routing.alone:  # one task, every row: its own model's arithmetic
            key = present[0][0]
            part, mode = self.parts[key], self.modes[key]
            return s + part(y) if mode == INPUT else s + part(s) if mode == OUTPUT else part(s).to(s.dtype)
        out = s.clone()  # each task's rows written in place: one copy per module, not one per task
        for key, rows in present:
            part, mode = self.parts[key], self.modes[key]
            if mode == INPUT:
                out.index_add_(0, rows, part(y.index_select(0, rows)).to(out.dtype))
            elif mode == OUTPUT:
                out.index_add_(0, rows, part(s.index_select(0, rows)).to(out.dtype))
            else:
                out.index_copy_(0, rows, part(s.index_select(0, rows)).to(out.dtype))
        return out


class TaskNorm(nn.Module):
    """A frozen norm ``shared`` and the copies of the tasks that trained it: each task's rows go
    through its copy, the others through ``shared``."""

    def __init__(self, shared: nn.Module, routing: Routing):
        super().__init__()
        self.shared = shared
        self.copies = nn.ModuleDict()
        self.routing = routing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.routing.alone and self.routing.groups[0][0] in self.copies:
            return self.copies[self.routing.groups[0][0]](x)
        out = self.shared(x)
        for key, rows in self.routing.groups:
            if key in self.copies:
                out.index_copy_(0, rows, self.copies[key](x.index_select(0, rows)))
        return out


def _frozen(module: nn.Module) -> nn.Module:
    """The frozen module inside a routed one (the module itself when it is not routed)."""
    return module.base if isinstance(module, TaskSite) else module.shared if isinstance(module, TaskNorm) else module


class SharedBackbone(nn.Module):
    """A frozen ``backbone`` (its head unused) carrying tasks added by ``add``; ``forward(x, keys)``
    scores a batch whose row ``i`` belongs to task ``keys[i]``."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.heads = nn.ModuleDict()
        self.routing = Routing()

    @classmethod
    def alone(cls, key: str, model: Backbone) -> SharedBackbone:
        """A model that changed its backbone (a full fine-tune) as the one task ``key`` of its own
        shared model: nothing routed, its head the task's."""
        shared = cls(model)
        shared.heads[key] = model.head
        return shared

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    def add(self, key: str, model: Backbone) -> None:
        """Carry the task ``key`` (a word without dots) whose model is ``model``: its PETL parts
        move into the shared model (``model`` is not used after). ``NotShared`` when the model
        differs from the backbone elsewhere; the shared model is then unchanged."""
        if key in self.heads:
            raise ValueError(f"task {key!r} is already on this backbone")
        if getattr(model, "layer_weights", None) is not None:
            raise NotShared("a weighted layer sum is a per-task change of the features")
        plan: list[tuple[nn.Module, str, nn.Module, str]] = []  # (parent, child name, task's module, what)
        self._compare(self.backbone, model, plan, "")
        for parent, name, theirs, what in plan:
            self._attach(parent, name, key, theirs, what)
        self.heads[key] = model.head.eval().requires_grad_(False)

    def remove(self, key: str) -> None:
        """Drop the task ``key``'s parts (the routed modules stay, empty, for the next task)."""
        for module in self.modules():
            if isinstance(module, TaskSite) and key in module.parts:
                del module.parts[key]
                module.modes.pop(key)
            elif isinstance(module, TaskNorm) and key in module.copies:
                del module.copies[key]
        del self.heads[key]

    def forward(self, x: torch.Tensor, keys: list[str]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """Windows ``x [b, ...]`` of tasks ``keys`` (one per row) -> for each task present
        ``(key, rows [k], logits [k, its classes])``."""
        unknown = set(keys) - set(self.heads)
        if unknown:
            raise KeyError(f"no task {sorted(unknown)[0]!r} on this backbone")
        self.routing.set(keys, x.device)
        try:
            tokens = self.backbone.forward_features(x)
            return [(key, rows, self.heads[key](tokens.index_select(0, rows))) for key, rows in self.routing.groups]
        finally:
            self.routing.groups = []

    # ------------------------------------------------------------ building

    def _compare(self, ours: nn.Module, theirs: nn.Module, plan: list, path: str) -> None:
        """Walk ``ours`` (the shared model, its routed modules seen as their frozen module) and
        ``theirs`` (a task's) together, noting in ``plan`` what the task adds: ``(parent, child
        name, the task's module, "site" or "norm")``; ``NotShared`` at the first difference that
        is not a PETL part. An int8 Linear of ours matches a float one that quantizes to it."""
        if is_int8(ours):
            if not same_int8(ours, theirs):
                raise NotShared(f"{path} differs from the backbone's")
            return
        if not _same(ours, theirs):
            raise NotShared(f"{path or 'the backbone'} differs from the backbone's")
        for name, child in ours.named_children():
            if path == "" and name == "head":
                continue
            where = f"{path}.{name}" if path else name
            frozen = _frozen(child)
            other = getattr(theirs, name, None)
            if other is None:
                raise NotShared(f"{where} is missing")
            if isinstance(other, (ParallelSite, SequentialSite, LoRALinear)):
                plan.append((ours, name, other, "site"))
                self._compare(frozen, other.base, plan, where)
            elif isinstance(frozen, nn.LayerNorm) and not _same(frozen, other):
                if not isinstance(other, nn.LayerNorm) or other.normalized_shape != frozen.normalized_shape:
                    raise NotShared(f"{where} is not the backbone's norm")
                plan.append((ours, name, other, "norm"))
            else:
                self._compare(frozen, other, plan, where)

    def _attach(self, parent: nn.Module, name: str, key: str, theirs: nn.Module, what: str) -> None:
        """Put the task's part ``theirs`` at ``parent.name``, wrapping that module once."""
        current = getattr(parent, name)
        if what == "norm":
            routed = current if isinstance(current, TaskNorm) else TaskNorm(current, self.routing)
            routed.copies[key] = theirs
        else:
            routed = current if isinstance(current, TaskSite) else TaskSite(current, self.routing)
            if isinstance(theirs, LoRALinear):
                routed.parts[key], routed.modes[key] = theirs.lora, INPUT
            elif isinstance(theirs, ParallelSite):
                routed.parts[key], routed.modes[key] = theirs.adapter, INPUT
            else:
                routed.parts[key], routed.modes[key] = theirs.adapter, OUTPUT if theirs.residual else REPLACE
        setattr(parent, name, routed)
