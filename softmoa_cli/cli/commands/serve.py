"""``softmoa serve``: many finetune runs as tasks over HTTP, on one copy of each frozen backbone."""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import Device, Quantize, Runs

Served = Annotated[list[str], typer.Argument(metavar="[NAME=]RUN", hidden=True, show_default=False)]
Host = Annotated[str, typer.Option(metavar="HOST", help="Address to listen on; 0.0.0.0 opens the server to the "
                                                        "network.")]
Port = Annotated[int, typer.Option(min=0, max=65535, metavar="PORT", help="Port to listen on (0: any free one).")]
MaxBatch = Annotated[int, typer.Option(min=1, metavar="N", help="Windows per forward pass, mixed across requests "
                                                               "and tasks (1: batching off).")]
MaxWait = Annotated[float, typer.Option("--max-wait-ms", min=0, metavar="MS",
                                        help="How long a window waits for others to fill its batch.")]
MaxQueue = Annotated[int, typer.Option(min=1, metavar="N", help="Windows waiting per backbone before requests are "
                                                               "refused with 503.")]
MaxMb = Annotated[float, typer.Option("--max-mb", min=0.001, metavar="MB", help="Largest upload accepted.")]
Admin = Annotated[bool, typer.Option("--admin", metavar="", help="Allow adding (POST /v1/tasks) and removing "
                                                                 "(DELETE /v1/tasks/NAME) tasks, from this host "
                                                                 "only.")]


def serve(
    runs_served: Served,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    max_batch: MaxBatch = 32,
    max_wait_ms: MaxWait = 10.0,
    max_queue: MaxQueue = 1024,
    max_mb: MaxMb = 50.0,
    admin: Admin = False,
    device: Device = "cpu",
    quantize: Quantize = None,
    runs: Runs = None,
) -> None:
    """Serve finetune runs as tasks over HTTP: each distinct backbone is loaded once and every
    run on it joins it as a task; requests for different tasks share its forward passes.

    Each RUN is a run folder or a pushed run's hub id, named NAME or after its folder. Routes:
    GET /health, GET /v1/tasks, POST /v1/tasks/NAME/predict (an audio file as the body or a
    multipart upload; query top_k, threshold, timeline, window, hop; answers as predict --json),
    POST /v1/tasks/NAME (Hugging Face's [{label, score}]), GET / (a page to try it). Stop with
    Ctrl-C or SIGTERM: requests in flight finish.

    Examples:
      softmoa serve runs/fsdd-soft-20261201-120000
      softmoa serve digits=runs/fsdd-soft-20261201-120000 birds=me/birds-soft
      curl --data-binary @clip.wav localhost:8000/v1/tasks/digits/predict
    """
    from ...engine.errors import SoftmoaError

    try:
        from ...engine.serve.http import run_server
    except ImportError as error:
        raise SoftmoaError(f"softmoa serve needs {error.name}: pip install 'softmoa[serve]'") from None
    from ...engine.serve.batcher import Batcher
    from ...engine.serve.service import Service
    from ...engine.serve.tasks import TaskSet
    from ..console import line, note

    if not runs_served:
        raise SoftmoaError("give at least one RUN to serve (a run folder or a pushed run's hub id), e.g. "
                           "softmoa serve runs/fsdd-soft-20261201-120000")
    tasks = TaskSet(device, quantize)
    for item in runs_served:
        name, _, reference = item.rpartition("=")
        task = tasks.add(name or None, reference)
        note(f"task {task.name}: {task.source} ({task.method}, {len(task.classifier.labels)} labels)")
    shared = sum(len(group.tasks) for group in tasks.groups if len(group.tasks) > 1)
    note(f"{len(tasks.names)} task(s) on {len(tasks.groups)} backbone(s)"
         + (f"; {shared} share one" if shared else ""))
    service = Service(tasks, Batcher(max_batch, max_wait_ms, max_queue), int(max_mb * 2**20))
    run_server(service, host, port, admin, ready=lambda url: line(f"serving on {url} (Ctrl-C to stop)"))
