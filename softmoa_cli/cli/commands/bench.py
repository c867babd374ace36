"""``softmoa bench``: what a training step of each PETL method costs on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import Device, Json, Threads

DEFAULT_SPECS = ("linear", "adapter:reduction_rate=64", "dense:experts=7,reduction_rate=128",
                 "soft:experts=7,slots=1,reduction_rate=128", "lora", "full")
DEFAULT_METHODS = ",".join(DEFAULT_SPECS)
# Shown with a space after each comma (the same methods: an item with = but no : continues the
# spec before it), so that help wraps it whole at any width.
SHOWN_METHODS = DEFAULT_METHODS.replace(",", ", ")


def bench(
    methods: Annotated[str, typer.Option(metavar="SPECS", help="Comma-separated method specs, name or "
                                         "name:key=value,...; a+b gives a list (lora:targets=q+v). Default: "
                                         f"{SHOWN_METHODS}.", show_default=False)] = DEFAULT_METHODS,
    backbone: Annotated[str, typer.Option(metavar="FAMILY", help="Backbone family: ast, whisper (its encoder), "
                                          "wav2vec2, hubert or wavlm; random weights at its base size (AST-base, "
                                          "Whisper base, wav2vec2-base) unless the dims below say otherwise.")] = "ast",
    dim: Annotated[int | None, typer.Option(min=1, metavar="N", help="Token width d (default: the family's base "
                                            "size: 768, Whisper 512).", show_default=False)] = None,
    depth: Annotated[int | None, typer.Option(min=1, metavar="N", help="Transformer blocks (default: 12, Whisper "
                                              "6).", show_default=False)] = None,
    heads: Annotated[int | None, typer.Option(min=1, metavar="N", help="Attention heads (default: 12, Whisper 8).",
                                              show_default=False)] = None,
    mlp_dim: Annotated[int | None, typer.Option(min=1, metavar="N", help="MLP hidden width (default: 3072, "
                                                "Whisper 2048).", show_default=False)] = None,
    frames: Annotated[int, typer.Option(min=16, metavar="N", help="Input frames of 10 ms (max_length): log-mel "
                                        "frames, or frames * 160 samples of a waveform.")] = 400,
    batch: Annotated[int, typer.Option(min=1, metavar="N", help="Examples per step.")] = 4,
    classes: Annotated[int, typer.Option(min=1, metavar="N", help="Classes of the head, counted in the trainable "
                                                           "parameters and FLOPs.")] = 10,
    threads: Threads = None,
    warmup: Annotated[int, typer.Option(min=0, metavar="N", help="Untimed rounds first.")] = 1,
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="Timed rounds; each times every method once (1 is "
                                                           "noise: use 5 or more).")] = 5,
    reference: Annotated[str, typer.Option(metavar="SPEC", help="Spec or method name the ratios divide "
                                                                "by.")] = "adapter",
    compare_transformers: Annotated[bool, typer.Option(
        "--compare-transformers", metavar="", help="Also time transformers' ASTModel forward at the same dims "
                                       "(adds linear, the bare engine AST, when missing; AST only).")] = False,
    activation_checkpointing: Annotated[bool, typer.Option(
        "--activation-checkpointing", metavar="", help="Also measure every method with activation checkpointing (rows "
                                                       "NAME +checkpointing, in the same rounds) and give its step-time "
                                                       "and memory ratios to the method without it.")] = False,
    device: Device = "cpu",
    as_json: Json = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", help="Also write the full results (every "
                                             "sample) to this JSON file.", show_default=False)] = None,
) -> None:
    """Median training-step and forward times, peak memory, trainable parameters and FLOPs of
    each PETL method on random weights and data, the methods timed round-robin in one process.

    Examples:
      softmoa bench --threads 2 --repeats 5 --out bench.json
      softmoa bench --methods adapter,lora:rank=8 --compare-transformers
      softmoa bench --methods soft --reference soft --activation-checkpointing
      softmoa bench --backbone whisper --frames 300 --threads 2
    """
    from rich.progress import Progress

    from ...engine.bench import BenchSettings, run_bench, split_specs
    from ...engine.fsutil import atomic_write_json
    from ..console import err, note

    settings = BenchSettings.sized(backbone, dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, frames=frames,
                                   batch=batch, num_classes=classes, warmup=warmup, repeats=repeats, threads=threads,
                                   device=device, activation_checkpointing=activation_checkpointing)
    specs = split_specs(methods)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:  # no bar in a pipe or log
        task = bar.add_task("bench", total=repeats)
        result = run_bench(specs, settings, reference, transformers_ast if compare_transformers else None,
                           lambda done, total, text: bar.update(task, completed=done, description=text))
    if as_json:
        import json

        print(json.dumps(result.to_dict(), indent=2))
    else:
        _table(result)
    if result.engine_over_transformers is not None:
        note(f"engine forward / transformers ASTModel forward: {result.engine_over_transformers:.3f}")
    note(f"peak memory: {result.memory_measure}")
    for text in result.notes():
        note(text)
    if out is not None:
        atomic_write_json(out, result.to_dict())
        note(f"wrote {out}")


def _table(result):
    """The results table on stdout. The method labels stay whole; a narrow terminal or a log loses
    the secondary columns (forward time, step/forward, FLOPs) to lines below it, or stacks it."""
    from ..console import Column, show_table

    s = result.settings
    title = (f"training-step cost: {s.title}, {s.frames} frames, batch {s.batch}, "
             f"{result.environment['threads']} threads, {result.environment['device']}; "
             f"medians of {s.repeats}, ratios to {result.reference}")
    secondary = ("fwd ms", "step/fwd", "GFLOPs/ex")
    columns = [Column("method", "left", whole=True)] + [
        Column(name, optional=name in secondary)
        for name in ("step ms", "fwd ms", "step/fwd", "step/ref", "peak MiB", "peak/ref", "trainable", "GFLOPs/ex")]

    def number(value, spec):
        return "-" if value is None else format(value, spec)

    rows = [[row.label, number(row.step_ms, ".1f"), f"{row.forward_ms:.1f}", number(row.step_over_forward, ".2f"),
             number(row.step_ratio, ".3f"), number(row.peak_bytes and row.peak_bytes / 2**20, ".0f"),
             number(row.peak_ratio, ".3f"), number(row.trainable_params, ","),
             number(row.flops and row.flops / 1e9, ".2f")] for row in result.rows]
    show_table(columns, rows, title)


def transformers_ast(settings):
    """transformers' ASTModel at the bench's dims (random weights): the comparison model."""
    from ...engine.errors import SoftmoaError

    try:
        import transformers
    except ImportError:
        raise SoftmoaError("--compare-transformers needs transformers: pip install 'softmoa[test]'") from None
    config = transformers.ASTConfig(hidden_size=settings.dim, num_hidden_layers=settings.depth,
                                    num_attention_heads=settings.heads, intermediate_size=settings.mlp_dim,
                                    max_length=settings.frames, num_mel_bins=128)
    return transformers.ASTModel(config)
