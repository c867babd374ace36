"""Talking to the Hugging Face Hub: what a hub id looks like, fetching a repo through the hub
cache (offline when ``HF_HUB_OFFLINE=1``, as backbone checkpoints are), asking whether a repo
holds a file, and uploading a folder as a repo.

A hub id found in the cache resolves without a network call; huggingface_hub's own settings
(``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``) apply throughout.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import SoftmoaError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name

# A folder of the hub cache: .../models--<owner>--<name>/snapshots/<commit>
CACHED_SNAPSHOT = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/[0-9a-f]{40}/?$")


def is_hub_id(reference: str | Path) -> bool:
    """Whether ``reference`` reads as ``owner/name`` (a path such as ``./x/y`` or ``/x/y`` does not)."""
    text = str(reference)
    return bool(HUB_ID.match(text)) and not text.startswith((".", "/", "~"))


def cached_hub_id(path: str | Path) -> str | None:
    """The hub id of a snapshot folder of the hub cache (``.../models--owner--name/snapshots/<commit>``),
    else None: a backbone loaded from the cache by its path is still the hub's."""
    found = CACHED_SNAPSHOT.search(Path(path).expanduser().absolute().as_posix())
    return f"{found['owner']}/{found['name']}" if found else None


def fetch_repo(repo_id: str) -> Path:
    """The local snapshot of the pushed run ``repo_id`` (downloaded into the hub cache if needed
    and allowed); a SoftmoaError names the id, why it failed and what to do."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as error:
        raise SoftmoaError(f"{repo_id}: no run folder of that name here, and the hub repo of that id cannot be had "
                           f"({_reason(error)}); give a run folder, or the hub id of a pushed run (online, or once "
                           "downloaded into the Hugging Face cache)") from None


def repo_has(repo_id: str, filename: str) -> bool:
    """Whether hub repo ``repo_id`` holds ``filename`` (from the cache when it is there; offline,
    False unless cached)."""
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(repo_id, filename)
        return True
    except Exception:  # no such file or repo, or not reachable: not a repo holding it
        return False


def upload(folder: Path, repo_id: str, private: bool, message: str) -> str:
    """Create hub repo ``repo_id`` if needed (``private`` when it is created) and upload every
    file of ``folder`` to it as one commit; return the repo's URL."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
        return str(url)
    except Exception as error:
        raise SoftmoaError(f"{repo_id}: cannot push to the Hugging Face hub ({_reason(error)}); log in with "
                           "`hf auth login` (or set HF_TOKEN) on a machine online, or write the files with `dry_run` "
                           "DIR and upload them yourself") from None


def _reason(error: Exception) -> str:
    """The gist of a huggingface_hub error on one line."""
    from huggingface_hub import constants

    name = type(error).__name__
    if name == "LocalEntryNotFoundError":
        return ("not in the Hugging Face cache, and HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
                else "not in the Hugging Face cache, and the hub cannot be reached")
    if name == "OfflineModeIsEnabled":
        return "HF_HUB_OFFLINE is set"
    if name == "RepositoryNotFoundError":
        return "no such repo on the hub, or a private one you cannot see"
    return str(error).strip().splitlines()[0][:160] if str(error).strip() else name
