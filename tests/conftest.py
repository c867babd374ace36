"""Shared fixtures: tiny AST configs and real FSDD clips copied to a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FSDD = SHARED / "data" / "fsdd" / "recordings"


def tiny_ast_config(**changes):
    """A 2-block, 64-wide AST over 100 frames: fast enough for every test."""
    from softmoa_cli.engine.models.ast import ASTConfig

    base = dict(dim=64, depth=2, heads=4, mlp_dim=128, max_length=100, num_classes=5)
    return ASTConfig(**(base | changes))


@pytest.fixture
def fsdd_clips(tmp_path) -> list[Path]:
    """Four real FSDD recordings (8 kHz spoken digits) copied to a temporary folder."""
    if not FSDD.is_dir():
        pytest.fail(f"shared FSDD data missing at {FSDD}")
    names = ["0_jackson_0.wav", "3_theo_10.wav", "7_nicolas_5.wav", "9_yweweler_20.wav"]
    out = tmp_path / "clips"
    out.mkdir()
    for name in names:
        shutil.copy(FSDD / name, out / name)
    return [out / name for name in names]


@pytest.fixture(autouse=True, scope="session")
def isolated_home(tmp_path_factory):
    """Tests never touch the user's ~/.softmoa or reach a hub: a fresh SOFTMOA_HOME, offline."""
    import os

    saved = {key: os.environ.get(key) for key in ("SOFTMOA_HOME", "HF_HUB_OFFLINE")}
    os.environ["SOFTMOA_HOME"] = str(tmp_path_factory.mktemp("softmoa-home"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
