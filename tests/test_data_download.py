"""Downloads: resume over HTTP, SHA-256, no network, safe extraction, the AST checkpoint."""

from __future__ import annotations

import dataclasses
import http.server
import io
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from helpers import make_archive, make_esc50, random_hf_model, run, write_wav

from softmoa_cli.engine.data.archives import extract
from softmoa_cli.engine.data.registry import datasets
from softmoa_cli.engine.data.spec import Source
from softmoa_cli.engine.errors import SoftmoaError


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# --- HTTP: resume, checksum, no network -------------------------------------------------------


class Server(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_first = 0  # bytes sent before the first response breaks off
    ranges: list[str | None] = []

    def do_GET(self):
        asked = self.headers.get("Range")
        type(self).ranges.append(asked)
        start = int(asked.split("=")[1].rstrip("-")) if asked else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.end_headers()
        if type(self).cut_first:
            body, type(self).cut_first = body[:type(self).cut_first], 0
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fsdd_server(tmp_path, monkeypatch):
    """A local server for a tiny FSDD archive, registered as fsdd's source."""
    source = tmp_path / "src" / "free-spoken-digit-dataset-1.0.10" / "recordings"
    for k in range(12):
        write_wav(source / f"{k % 10}_theo_{k}.wav", seconds=0.5, rate=8000, seed=k)
    archive = make_archive(tmp_path / "src", tmp_path / "fsdd.tar.gz")
    Server.payload, Server.ranges = archive.read_bytes(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/fsdd.tar.gz"
    spec = datasets().get("fsdd")

    def use(sha256=None):
        monkeypatch.setitem(datasets()._items, "fsdd", dataclasses.replace(
            spec, source=Source(url, "fsdd.tar.gz", sha256)))

    yield use, archive
    server.shutdown()


def test_download_resumes_after_a_broken_connection(tmp_path, fsdd_server):
    import hashlib

    use, archive = fsdd_server
    use(hashlib.sha256(archive.read_bytes()).hexdigest())
    Server.cut_first = len(Server.payload) // 2
    home = tmp_path / "home"
    broken = run("download", "fsdd", "--home", home)
    assert broken.exit_code == 2 and "run the same command again to resume" in broken.output
    part = home / "downloads" / "fsdd.tar.gz.part"
    assert part.stat().st_size == len(Server.payload) // 2
    resumed = run("download", "fsdd", "--home", home)
    assert resumed.exit_code == 0 and "installed 12 clips" in resumed.stdout, resumed.output
    assert Server.ranges == [None, f"bytes={len(Server.payload) // 2}-"]
    assert not part.exists() and not (home / "downloads" / "fsdd.tar.gz").exists()  # archive removed once installed
    assert len(list((home / "data" / "fsdd" / "recordings").glob("*.wav"))) == 12
    again = run("download", "fsdd", "--home", home)
    assert again.exit_code == 0 and "already there" in again.stdout and len(Server.ranges) == 2


def test_wrong_checksum_deletes_the_file(tmp_path, fsdd_server):
    use, _ = fsdd_server
    use("0" * 64)
    result = run("download", "fsdd", "--home", tmp_path / "home")
    assert result.exit_code == 2 and "SHA-256" in result.output and "differs" in result.output
    assert not list((tmp_path / "home" / "downloads").iterdir()) and not (tmp_path / "home" / "data").exists()


def test_no_network_is_one_line_naming_from(tmp_path, monkeypatch):
    spec = datasets().get("esc50")
    monkeypatch.setitem(datasets()._items, "esc50", dataclasses.replace(
        spec, source=Source("http://127.0.0.1:9/ESC-50-master.zip", "ESC-50-master.zip")))
    result = run("download", "esc50", "--home", tmp_path / "home")
    assert result.exit_code == 2 and "--from PATH" in result.output and "Traceback" not in result.output
    assert result.output.startswith("error: cannot download http://127.0.0.1:9/ESC-50-master.zip")


# --- safe extraction -------------------------------------------------------------------------


def tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as handle:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            handle.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def unsafe_archives(tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside"
    zipped = tmp_path / "dotdot.zip"
    with zipfile.ZipFile(zipped, "w") as handle:
        handle.writestr("ESC-50-master/meta/esc50.csv", "filename,fold,target,category\n")
        handle.writestr("../escape", "gotcha")
    linked = tmp_path / "zip-symlink.zip"
    with zipfile.ZipFile(linked, "w") as handle:
        info = zipfile.ZipInfo("ESC-50-master/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(info, str(outside))
        handle.writestr("ESC-50-master/link/pwned.txt", "gotcha")
    return {
        "zip-symlink.zip": linked,
        "dotdot.tar.gz": tar_with(tmp_path / "dotdot.tar.gz", [(entry("ESC-50-master/../../escape"), b"gotcha")]),
        "dotdot.zip": zipped,
        "absolute.tar.gz": tar_with(tmp_path / "absolute.tar.gz", [(entry(str(outside / "abs.txt")), b"gotcha")]),
        "symlink-out.tar.gz": tar_with(tmp_path / "symlink-out.tar.gz", [
            (entry("ESC-50-master/link", tarfile.SYMTYPE, str(outside)), None),
            (entry("ESC-50-master/link/pwned.txt"), b"gotcha")]),
        "relative-link-out.tar.gz": tar_with(tmp_path / "relative-link-out.tar.gz", [
            (entry("ESC-50-master/a/link", tarfile.SYMTYPE, "../../../outside"), None),
            (entry("ESC-50-master/a/link/pwned.txt"), b"gotcha")]),
        "hardlink-out.tar.gz": tar_with(tmp_path / "hardlink-out.tar.gz", [
            (entry("ESC-50-master/hard", tarfile.LNKTYPE, "../outside/secret.txt"), None)]),
    }


def test_unsafe_archives_are_refused_and_nothing_lands_outside(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("keep")
    archives = unsafe_archives(tmp_path)
    home = tmp_path / "home"
    before = files_under(tmp_path)
    for name, archive in archives.items():
        result = run("download", "esc50", "--from", archive, "--home", home)
        assert result.exit_code == 2, name
        assert "refused" in result.output and "Traceback" not in result.output, (name, result.output)
    assert files_under(tmp_path) - before <= {"home", "home/data"}  # no data set, no staging folder, no escape
    assert (tmp_path / "outside" / "secret.txt").read_text() == "keep"


def test_links_inside_the_target_are_kept(tmp_path):
    root = make_esc50(tmp_path / "src")
    with tarfile.open(tmp_path / "esc.tar", "w") as handle:
        for path in sorted(p for p in (tmp_path / "src").rglob("*") if p.is_file()):
            handle.add(path, path.relative_to(tmp_path / "src").as_posix())
        handle.addfile(entry("ESC-50-master/sounds", tarfile.SYMTYPE, "audio"))
    result = run("download", "esc50", "--from", tmp_path / "esc.tar", "--home", tmp_path / "home")
    assert result.exit_code == 0, result.output
    link = tmp_path / "home" / "data" / "esc50" / "sounds"
    assert link.is_symlink() and sorted(p.name for p in link.iterdir()) == sorted(p.name for p in (root / "audio").iterdir())
    assert (tmp_path / "esc.tar").exists()  # a --from archive is the user's: never deleted


def test_extracted_size_is_bounded(tmp_path):
    make_esc50(tmp_path / "src")
    for suffix in ("zip", "tar.gz"):
        archive = make_archive(tmp_path / "src", tmp_path / f"esc.{suffix}")
        with pytest.raises(SoftmoaError, match="refused.*(declares|more than the allowed size)"):
            extract(archive, tmp_path / f"out-{suffix}", max_bytes=50_000)
        assert not (tmp_path / f"out-{suffix}").exists()
    extract(tmp_path / "esc.zip", tmp_path / "fine", max_bytes=10_000_000)
    assert (tmp_path / "fine" / "ESC-50-master" / "meta" / "esc50.csv").is_file()


# --- the AudioSet AST checkpoint --------------------------------------------------------------


def test_checkpoint_from_the_hub_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    snapshot = tmp_path / "hf" / "hub" / "models--MIT--ast-finetuned-audioset-10-10-0.4593"
    revision = "0123456789abcdef0123456789abcdef01234567"
    random_hf_model(snapshot / "snapshots" / revision)
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    result = run("download", "ast-audioset", "--home", tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert str(snapshot / "snapshots" / revision) in result.stdout.replace("\n", "")

    listed = run("download", "--home", tmp_path / "home")  # the list says where each checkpoint is
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith(" ")}
    assert "yes: Hugging Face cache" in rows["ast-audioset"] and "yes: shipped in the package" in rows["embedded"]

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    listed = run("download", "--home", tmp_path / "home")
    assert " no " in {line.split()[0]: line for line in listed.stdout.splitlines()
                      if line.startswith(" ")}["ast-audioset"] + " "
    missing = run("download", "ast-audioset", "--home", tmp_path / "home")
    assert missing.exit_code == 2 and "--from PATH" in missing.output and "Traceback" not in missing.output


def test_checkpoint_from_a_local_folder_loads(tmp_path):
    from softmoa_cli.engine.models.pretrained import load_pretrained

    _, model = random_hf_model(tmp_path / "model", hidden_size=32)
    result = run("download", "ast-audioset", "--from", model, "--home", tmp_path / "home")
    assert result.exit_code == 0, result.output
    installed = tmp_path / "home" / "checkpoints" / "ast-audioset"
    assert (installed / "model.safetensors").is_file() and "--checkpoint" in result.stdout
    assert load_pretrained(installed).model.config.dim == 32
    bad = run("download", "ast-audioset", "--from", tmp_path / "home", "--home", tmp_path / "home2")
    assert bad.exit_code == 2 and "not a Hugging Face model folder" in bad.output
