"""Ablation studies: a grid of ordinary fine-tuning runs, summarised as a table and a plot.

Every grid point (value x seed) is a normal run folder under ``<out>/runs/``. A point is done
once its ``point.json`` (its test score and cost figures) is written next to the run's files; an
interrupted study continues where it stopped (done points are read back, an unfinished run
resumes), so the same command finishes it.

The score is the runs' test score of their task (``Task.metric``: accuracy, or mAP on multi-label
data): the results name it (``metric``) and hold ``<metric>_mean``/``<metric>_std``, and the
table, Markdown and plot say which.

``studies`` holds the catalogue, ``configs`` each point's run config, ``points`` a point's
folder and result, ``run`` the grid (with resume) and its files, ``summary`` the result rows
and their text, ``plot`` the figure.
"""

from __future__ import annotations

from .configs import study_config
from .run import run_study
from .studies import get_study, parse_values

__all__ = ["get_study", "parse_values", "run_study", "study_config"]
