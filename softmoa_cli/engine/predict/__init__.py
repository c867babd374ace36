"""Scoring audio files with a classifier: features per window, probabilities averaged.
Single-label models give softmax scores; multi-label ones (a multi-label run, an AudioSet
checkpoint) independent sigmoid scores, and the labels at or above their decision thresholds.

Inputs are files, ``-`` (one WAV/FLAC/OGG file on standard input) or folders (every audio file
under them, recursively, sorted). ``Predictor.predict_files`` decodes and featurises files in
background threads, a few files ahead, and runs the model on batches of ``batch_size`` windows
packed across files; results come back in input order, a bad file's error in its place. With
a ``Timeline`` it also scores regular windows (``window`` and ``hop`` seconds) and merges
consecutive windows that agree on a label above threshold into segments.

Live audio (raw 16 kHz mono s16le PCM in chunks) goes through a ``LiveTimeline``: the same
windows and numbers as a file's timeline, each as soon as its audio is in.

``inputs.py`` reads the inputs, ``timeline.py`` cuts and merges the windows along a file,
``results.py`` turns a file's window scores into its prediction (``Marking``, ``FilePrediction``),
``live_frames.py`` and ``stream.py`` make a live timeline's frames and windows, ``predictor.py``
scores (``Predictor``, ``predictor_for``). The server (``engine/serve``) reads and marks its
requests with the same functions."""

from .predictor import Predictor, predictor_for
from .stream import LiveTimeline
from .timeline import Timeline, timeline_segments

__all__ = ["LiveTimeline", "Predictor", "Timeline", "predictor_for", "timeline_segments"]
