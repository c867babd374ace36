"""Experiment trackers besides ``log.csv`` (``training.log``): TensorBoard and MLflow.

A ``Tracker`` takes a fold's hyper-parameters once (the run config, flattened to dotted keys)
and scalars by optimiser step: ``step/loss, step/accuracy, step/lr, step/samples_per_s,
step/data_wait`` after every step, and the epoch's ``log.csv`` row as ``epoch/...`` at its last
step. The run folder's ``log.csv`` and ``metrics.json`` stay the record: a resumed fold logs
the steps after its checkpoint again, and a tracker shows both.

- ``tensorboard``: event files in ``<fold folder>/tensorboard`` (``tensorboard --logdir runs``),
  the config as hyper-parameters and as text.
- ``mlflow``: one MLflow run per fold, named after the run folder (``/fold-K``), in the
  experiment named after the data set, at ``MLFLOW_TRACKING_URI``: a tracking server
  (``http://host:5000``), or a ``file:`` store with ``MLFLOW_ALLOW_FILE_STORE=true``; MLflow's
  default, ``sqlite:///mlflow.db``, needs the full ``mlflow`` package.

Both are optional extras (``pip install 'softmoa[tensorboard]'`` / ``'softmoa[mlflow]'``, the
latter mlflow-skinny).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import RunConfig, dump_config
from ..errors import SoftmoaError


class Tracker:
    """Where a fold's figures go; this base goes nowhere (the ranks other than 0, no ``--log``)."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` (name -> number) at optimiser step ``step`` (1-based, over the fold)."""

    def close(self) -> None:
        """Flush and release what the tracker holds."""


class TensorBoard(Tracker):
    """Event files of a ``SummaryWriter`` in ``directory``, with the hyper-parameters."""

    def __init__(self, directory: Path, params: dict, config_yaml: str):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(directory))
        self.writer.add_text("config", f"```\n{config_yaml}```")
        for summary in hparams(params, {}):  # experiment, session start and end: the HPARAMS tab
            self.writer.file_writer.add_summary(summary)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class MLflow(Tracker):
    """One MLflow run named ``name`` in experiment ``experiment``, with the parameters."""

    def __init__(self, experiment: str, name: str, params: dict):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=name)
        mlflow.log_params(params)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class Trackers(Tracker):
    """Several trackers as one."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.scalars(values, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracker -> the module it needs


def open_tracker(config: RunConfig, directory: Path, fold: int | None) -> Tracker:
    """The trackers of ``config.training.log`` for the fold whose folder is ``directory``; one
    line naming the extra to install when a tracker's package is missing."""
    names = config.training.log
    for name in names:
        try:
            __import__(EXTRAS[name])
        except ImportError:
            raise SoftmoaError(f"`log` {name}: the {EXTRAS[name]} package is not installed; "
                               f"pip install 'softmoa[{name}]'") from None
    params = flat_params(config)
    run_name = directory.name if fold is None else f"{directory.parent.name}/{directory.name}"
    made = {"tensorboard": lambda: TensorBoard(directory / "tensorboard", params, dump_config(config)),
            "mlflow": lambda: MLflow(Path(config.data.dataset).name or "softmoa", run_name, params)}
    return Trackers([made[name]() for name in names])


def flat_params(config: RunConfig) -> dict[str, str | int | float | bool]:
    """The config as dotted keys (``training.lr``); a list or an unset value as its JSON text."""
    flat: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)

    walk("", config.model_dump(mode="json"))
    return flat
