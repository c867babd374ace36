"""Scoring clips: window probabilities in bounded batches, a clip's scores as the mean over its
windows, a set of clips scored (``evaluation.py``), and the metrics of either task (``metrics.py``)."""
