"""Shared fixtures: real FSDD clips copied to a temporary folder, an isolated SOFTMOA_HOME.

Where a shared helper lives, one rule: a pytest fixture (and the FSDD lookup behind it) lives
here, in conftest.py, and tests take it by argument name; everything else that more than one
test module uses (plain functions, classes, constants) lives in helpers.py, imported as
``from helpers import ...``. A test module never imports from another test module, nor from
conftest.py; a helper used by one module only stays in that module.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest


SHARED = Path(__file__).resolve().parents[2] / "shared"
FSDD_ENV = "SOFTMOA_FSDD"
# The user's SOFTMOA_HOME, read before the isolated_home fixture replaces it for the session.
USER_HOME = os.environ.get("SOFTMOA_HOME") or "~/.softmoa"
FSDD_SAMPLES = ["0_jackson_0.wav", "3_theo_10.wav", "7_nicolas_5.wav", "9_yweweler_20.wav"]


def fsdd_places() -> list[Path]:
    """Where the FSDD recordings are looked for, in order: $SOFTMOA_FSDD (the recordings folder
    or the data set folder holding it), ../shared/data/fsdd beside the clone, the installed copy
    in the user's $SOFTMOA_HOME (``softmoa download fsdd``)."""
    places = []
    if os.environ.get(FSDD_ENV):
        chosen = Path(os.environ[FSDD_ENV]).expanduser().absolute()
        places += [chosen, chosen / "recordings"]
    places.append(SHARED / "data" / "fsdd" / "recordings")
    places.append(Path(USER_HOME).expanduser().absolute() / "data" / "fsdd" / "recordings")
    return places


@functools.cache
def fsdd_root() -> Path | None:
    """The folder holding the FSDD recordings (``<digit>_<speaker>_<take>.wav``), or None."""
    return next((place for place in fsdd_places() if all((place / name).is_file() for name in FSDD_SAMPLES)), None)


def fsdd_missing_message() -> str:
    looked = ", ".join([f"${FSDD_ENV} ({os.environ.get(FSDD_ENV) or 'unset'})",
                        str(SHARED / "data" / "fsdd" / "recordings"),
                        str(Path(USER_HOME) / "data" / "fsdd" / "recordings")])
    return (f"FSDD recordings not found (looked in {looked}); set {FSDD_ENV}=/path/to/free-spoken-digit-dataset/"
            "recordings or run `softmoa download fsdd`")


@pytest.fixture(scope="session")
def fsdd_recordings() -> Path:
    """The folder of the 3,000 FSDD recordings (read-only). Missing: skip with the reason, or
    fail under CI=true, where a missing copy is a broken set-up."""
    root = fsdd_root()
    if root is None:
        if os.environ.get("CI") == "true":
            pytest.fail(fsdd_missing_message(), pytrace=False)
        pytest.skip(fsdd_missing_message())
    return root


@pytest.fixture
def fsdd_clips(tmp_path, fsdd_recordings) -> list[Path]:
    """Four real FSDD recordings (8 kHz spoken digits) copied to a temporary folder."""
    out = tmp_path / "clips"
    out.mkdir()
    for name in FSDD_SAMPLES:
        shutil.copy(fsdd_recordings / name, out / name)
    return [out / name for name in FSDD_SAMPLES]


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


@pytest.fixture
def columns_80(monkeypatch):
    """Output as an 80-column terminal (or a pipe logged at that width) renders it."""
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def classifier(tmp_path):
    """A tiny AST classifier of 5 digit labels (zero..four) saved in this tool's format: its folder."""
    import torch
    from helpers import tiny_ast_config

    from softmoa_cli.engine.models.ast import AST
    from softmoa_cli.engine.models.pretrained import Pretrained, save_model
    from softmoa_cli.engine.task import SINGLE

    torch.manual_seed(0)
    model = AST(tiny_ast_config())
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1.0)
    return save_model(Pretrained(model, ["zero", "one", "two", "three", "four"], SINGLE, "test"), tmp_path / "model")


@pytest.fixture(scope="session")
def toy_runs(tmp_path_factory) -> dict:
    """Finished one-epoch runs of every built-in method on the toy table (a TINY random AST over
    32 mel bins x 48 frames): ``{method: run folder}``."""
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.train import finetune

    base = tmp_path_factory.mktemp("toy-runs")
    return {method: finetune(toy_config(method, epochs=1), base / method, table=toy_table())[0]
            for method in ("linear", "full", "adapter", "dense", "soft", "lora")}
