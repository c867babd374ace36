"""``softmoa predict``: top-k labels for audio files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import AudioFiles, Classifier, Device, Json, Quantize, Runs, Threads, positive


Run = Annotated[Path | None, typer.Option(metavar="RUN", help="A finetune run folder or a pushed run's hub id "
                                                             "(owner/name): its best model and labels.")]
TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K",
                                   help="Labels shown per file (per window with --timeline or --stream).")]
Threshold = Annotated[float | None, typer.Option(
    min=0, max=1, metavar="X", help="Multi-label models: mark labels scoring at least this (default: the run's thresholds "
                      "tuned on its validation clips; 0.5 for AudioSet checkpoints). With --timeline and a "
                      "single-label model: the top label's score a segment needs (default 0.5).",
    show_default=False)]
TimelineFlag = Annotated[bool, typer.Option(
    "--timeline", metavar="", help="Also score windows along each file (start and end in seconds) and merge "
                                   "consecutive windows that agree on a label above threshold into segments.")]
StreamFlag = Annotated[bool, typer.Option(
    "--stream", metavar="", help="Live audio: read raw 16 kHz mono PCM (s16le, as arecord -f S16_LE -r 16000 -c 1 "
                                 "writes it) from standard input (AUDIO: -) and print one JSON line per hop as soon "
                                 "as its window's audio has arrived, the windows of --timeline; the end of input "
                                 "ends it.")]
Window = Annotated[float | None, typer.Option(
    callback=positive, metavar="S", help="--timeline, --stream: window length in seconds, at most the model's input "
                      "(default: the model's max_length; a shorter window is zero-padded to it).", show_default=False)]
Hop = Annotated[float | None, typer.Option(
    callback=positive, metavar="S", help="--timeline, --stream: seconds between window starts (default: half the "
                                         "window).", show_default=False)]
BatchSize = Annotated[int, typer.Option(
    "--batch-size", min=1, metavar="N", help="Windows per forward pass, packed across files.")]
Workers = Annotated[int | None, typer.Option(
    min=0, metavar="N", help="Threads decoding files ahead of the model (default: up to 4; 0: none).",
    show_default=False)]
Csv = Annotated[bool, typer.Option(
    "--csv", metavar="", help="Print CSV on stdout: file, kind (clip, window or segment), start, end, label, "
                              "score; the clip rows hold the top-k labels.")]


def predict(
    audio: AudioFiles,
    checkpoint: Classifier = None,
    run: Run = None,
    runs: Runs = None,
    top_k: TopK = 5,
    threshold: Threshold = None,
    timeline: TimelineFlag = False,
    stream: StreamFlag = False,
    window: Window = None,
    hop: Hop = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    as_json: Json = False,
    as_csv: Csv = False,
    device: Device = "cpu",
    quantize: Quantize = None,
    threads: Threads = None,
) -> None:
    """Score audio files with a finetune run or a classifier checkpoint (long files: windows averaged).
    Without --checkpoint or --run, the most recent finished run is used. Multi-label models
    (a multi-label run, an AudioSet checkpoint) give independent sigmoid scores and mark the
    labels at or above their thresholds (✓), listed in full below each table.

    AUDIO: audio files (WAV, FLAC, OGG; any rate and channels), folders (every audio file under
    them, recursively, sorted) or - (one file on standard input, named <stdin>; with --stream,
    live audio as raw PCM, scored window by window as it arrives). Files are
    decoded in background threads and their windows batched across files; results keep the
    order given. A file that cannot be scored is named with the reason (SOFTMOA_DEBUG=1: the
    traceback too), the others are scored, and the exit code is 1.

    Examples:
      softmoa predict clip.wav other.flac --json
      softmoa predict clip.wav -k 3 -c MIT/ast-finetuned-audioset-10-10-0.4593
      softmoa predict clip.wav -c superb/wav2vec2-base-superb-ks
      softmoa predict clip.wav --threshold 0.3
      softmoa predict recordings/ --csv > scores.csv
      cat clip.flac | softmoa predict -
      softmoa predict long.wav --timeline --hop 0.5 --json
      softmoa predict recordings/ --quantize int8
      arecord -q -f S16_LE -r 16000 -c 1 | softmoa predict --stream - --hop 0.25
      ffmpeg -i talk.mp3 -f s16le -ar 16000 -ac 1 - | softmoa predict --stream -

    With --stream, each line is {"start", "end", "predictions": [{"label", "score"}]} (and, for a
    multi-label model, "positive": the labels at or above their thresholds), the numbers of the
    same window in --timeline on that audio as a file; at the end of input, its last window,
    zero-padded past the end as the file timeline pads it.
    """
    from ...engine.errors import SoftmoaError

    if as_json and as_csv:  # conflicting flags fail before torch loads
        raise SoftmoaError("give --json or --csv, not both")
    if stream:
        check_stream(audio, timeline, as_csv)
    elif not timeline and (window is not None or hop is not None):
        raise SoftmoaError("--window and --hop go with --timeline or --stream")
    if checkpoint is not None and run is not None:
        raise SoftmoaError("give --checkpoint or --run, not both")

    from ..console import err, note
    from ...engine.predict import Timeline, predictor_for

    if stream and threads is None:
        threads = 1  # one window per hop: a second thread gains little and, on a busy CPU, costs seconds of lag
        note("--stream: 1 torch thread (one window per hop keeps up best so; --threads N for more)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    predictor = predictor_for(checkpoint=checkpoint, run=run, runs_root=runs, device=device, threshold=threshold,
                              timeline=timeline, batch_size=batch_size, workers=workers, quantize=quantize)
    spec = Timeline(window, hop) if timeline or stream else None
    if spec is not None:
        spec.frames(predictor.features.max_length)  # a bad --window or --hop fails before any file is read
    note(f"model: {predictor.classifier.description}")
    if stream:
        print_stream(predictor.stream(spec, top_k))
        return
    with err.status("scoring…"):
        results = [report_error(result) for result in predictor.predict_files(audio, top_k, spec)]
    good = [r for r in results if not r.error]
    render(good, as_json, as_csv)
    if len(good) < len(results):
        raise typer.Exit(1)


def check_stream(audio: list[Path], timeline: bool, as_csv: bool) -> None:
    """--stream reads standard input, as JSON lines: refuse what goes against that."""
    from ...engine.errors import SoftmoaError

    if [str(a) for a in audio] != ["-"]:
        raise SoftmoaError(f"--stream reads raw PCM from standard input: give - as the only AUDIO, not "
                           f"{' '.join(str(a) for a in audio)}")
    if as_csv or timeline:
        dropped = "--csv" if as_csv else "--timeline"
        raise SoftmoaError(f"--stream prints JSON lines of its own timeline; drop {dropped}")


def print_stream(live) -> None:
    """Standard input's bytes through the ``LiveTimeline`` ``live`` as they come; one JSON line
    per window, flushed at once. A reader that goes away (``| head``) ends it quietly."""
    import sys

    def emit(windows) -> None:
        for window in windows:
            sys.stdout.write(json.dumps(window.to_dict()) + "\n")
        sys.stdout.flush()

    source = sys.stdin.buffer
    try:
        while data := source.read1(1 << 16):
            emit(live.feed(data))
        emit(live.end())
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def report_error(result):
    """A file that could not be scored: its one line (and its traceback with SOFTMOA_DEBUG=1)."""
    from ..console import fail

    if result.error:
        fail(f"{result.file}: {result.error}")
        if os.environ.get("SOFTMOA_DEBUG") and result.exception is not None:
            show_traceback(result.exception)
    return result


def render(results: list, as_json: bool, as_csv: bool) -> None:
    """The scored files as JSON, CSV or tables (with their timelines)."""
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif as_csv:
        write_csv(results)
    else:
        for result in results:
            show_prediction(result)
            if result.timeline is not None:
                show_timeline(result)


def show_prediction(result) -> None:
    """One file's name and its top-k table; a multi-label model's labels with their thresholds,
    those at or above them marked ✓ in the table and listed below it (some may rank below the top k)."""
    from rich.text import Text

    from ..console import Column, line, out, show_table

    out.print(Text(result.file, style="bold"), soft_wrap=True)
    if result.positive is None:
        show_table([Column("label", "left", whole=True), Column("score")],
                   [[label, f"{score:.4f}"] for label, score in result.predictions])
        return
    marked = {label for label, _ in result.positive}
    show_table([Column("label", "left", whole=True), Column("score"), Column("threshold"),
                Column("above", "center")],
               [[label, f"{score:.4f}", f"{result.thresholds[label]:.4f}", "✓" if label in marked else ""]
                for label, score in result.predictions])
    listed = ", ".join(f"{label} {score:.4f}" for label, score in result.positive)
    line(f"above threshold ({len(result.positive)}): {listed or 'none'}")


def show_timeline(result) -> None:
    """A file's timeline: one row per window (its top label and score) and the segments."""
    from ..console import Column, line, show_table

    show_table([Column("start"), Column("end"), Column("top label", "left", whole=True), Column("score")],
               [[f"{w.start:.2f}", f"{w.end:.2f}", *((w.predictions[0][0], f"{w.predictions[0][1]:.4f}")
                                                     if w.predictions else ("", ""))] for w in result.timeline])
    if not result.segments:
        line("segments: none above threshold")
        return
    show_table([Column("start"), Column("end"), Column("segment label", "left", whole=True), Column("mean score")],
               [[f"{s.start:.2f}", f"{s.end:.2f}", s.label, f"{s.score:.4f}"] for s in result.segments])


def write_csv(results) -> None:
    """CSV on stdout: a row per top-k label of each file (kind clip), and with a timeline a row
    per top-k label of each window (kind window) and one per segment (kind segment)."""
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["file", "kind", "start", "end", "label", "score"])
    for result in results:
        writer.writerows([result.file, "clip", "", "", label, score] for label, score in result.predictions)
        for w in result.timeline or []:
            writer.writerows([result.file, "window", w.start, w.end, label, score] for label, score in w.predictions)
        for seg in result.segments or []:
            writer.writerow([result.file, "segment", seg.start, seg.end, seg.label, seg.score])


def show_traceback(error: BaseException) -> None:
    """The traceback of a file's error on stderr (``SOFTMOA_DEBUG=1``)."""
    import traceback

    from ..console import err

    err.print("".join(traceback.format_exception(error)).rstrip(), markup=False, highlight=False, soft_wrap=True)
