"""``softmoa pretrain-embedded``: make the embedded backbone the package ships."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import Home, Threads


def pretrain_embedded(
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", show_default=False, help=(
        "Model folder to write (default $SOFTMOA_HOME/checkpoints/synth-speech-ast-v2)."))] = None,
    epochs: Annotated[int | None, typer.Option(min=1, metavar="N", show_default=False,
                                               help="Pretraining epochs (default: the recipe's, 8).")] = None,
    dim: Annotated[int | None, typer.Option(min=8, metavar="N", show_default=False,
                                            help="Token width (default: the recipe's, 128).")] = None,
    depth: Annotated[int | None, typer.Option(min=1, metavar="N", show_default=False,
                                              help="Transformer blocks (default: the recipe's, 4).")] = None,
    seed: Annotated[int, typer.Option(min=0, metavar="N", help="Seed of the weights and the data order.")] = 0,
    threads: Threads = None,
    home: Home = None,
) -> None:
    """Pretrain the embedded backbone on synthetic speech and sound events, with its record.

    Masked spectrogram modelling of a small AST on synth-speech (48 pseudo-words said by many
    synthetic voices) and synth-upstream (12 sound events), both generated on first use. The
    folder gets the model, and record.json with the weights' SHA-256, this command, the seed,
    the final masked loss and the test accuracy of a linear probe on the pseudo-words. The
    package ships the result in softmoa_cli/engine/embedded/backbone/; use another with
    --checkpoint DIR.

    Examples:
      softmoa pretrain-embedded
      softmoa pretrain-embedded --out softmoa_cli/engine/embedded/backbone
      softmoa pretrain-embedded --epochs 4 --dim 64 --out /tmp/small-backbone
    """
    import shlex

    from ...engine.data.paths import checkpoints_dir
    from ...engine.embedded.pretrain import EMBEDDED_NAME, RECIPE, pretrain_embedded as pretrain
    from ..console import line
    from ..progress import training_progress

    if threads:
        import torch

        torch.set_num_threads(threads)
    recipe = _recipe(RECIPE, epochs, dim, depth, seed)
    given = {"--out": out, "--epochs": epochs, "--dim": dim, "--depth": depth, "--seed": seed or None,
             "--threads": threads}
    command = shlex.join(["softmoa", "pretrain-embedded", *(f"{flag}={value}" for flag, value in given.items()
                                                            if value is not None)])
    out = out or checkpoints_dir() / EMBEDDED_NAME
    with training_progress(True) as progress:
        record = pretrain(out, recipe, progress, command)
    line(f"masked loss {record['masked_loss']:.4f}; linear probe on {record['upstream'][0]}: "
         f"{100 * record['upstream_test_accuracy']:.1f}% test accuracy ({record['upstream_classes']} classes)")
    line(f"sha256: {record['sha256']}")
    line(f"backbone: {out} (use it with --checkpoint {out})")


def _recipe(recipe: dict, epochs: int | None, dim: int | None, depth: int | None, seed: int) -> dict:
    """``recipe`` with the options given (a width brings its heads, 32 wide, and MLP, 4x)."""
    ast = recipe["ast"] | ({"dim": dim, "heads": max(1, dim // 32), "mlp_dim": 4 * dim} if dim else {})
    ast |= {"depth": depth} if depth else {}
    masked = recipe["masked"] | {"seed": seed} | ({"epochs": epochs} if epochs else {})
    return recipe | {"ast": ast, "masked": masked}
