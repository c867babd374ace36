"""Scoring audio files with a classifier: features per window, probabilities averaged.
Single-label models give softmax scores; multi-label ones (a multi-label run, an AudioSet
checkpoint) independent sigmoid scores, and the labels at or above their decision thresholds.

Inputs are files, ``-`` (one WAV/FLAC/OGG file on standard input) or folders (every audio file
under them, recursively, sorted). ``Predictor.predict_files`` decodes and featurises files in
background threads, a few files ahead, and runs the model on batches of ``batch_size`` windows
packed across files; results come back in input order, a bad file's error in its place. With
a ``Timeline`` it also scores regular windows (``window`` and ``hop`` seconds) and merges
consecutive windows that agree on a label above threshold into segments.

``inputs.py`` reads the inputs, ``timeline.py`` cuts and merges the windows along a file,
``results.py`` turns a file's window scores into its prediction (``Marking``, ``FilePrediction``),
``predictor.py`` scores (``Predictor``, ``predictor_for``). The server (``engine/serve``) reads
and marks its requests with the same functions."""

from .predictor import Predictor, predictor_for
from .timeline import Timeline, timeline_segments

__all__ = ["Predictor", "Timeline", "predictor_for", "timeline_segments"]
