"""Download a diffusers model from the Hugging Face hub by repo id: resumable, cancellable, verified (torch-free).

Only what a diffusers folder needs comes down: model_index.json and, in the component folders it names, the
configs, tokenizer files and ``.safetensors`` weights; never pickles (.bin, .ckpt, .pt), never the single-file
duplicates at the repo root, and a ``.fp16``-style variant only when the folder has no plain weights.

huggingface_hub does the talking: ``model_info`` for the file list with sizes and LFS sha256,
``get_hf_file_metadata`` for each file's location, ``http_get`` for the bytes (with its retries). Its own
``hf_hub_download`` deletes a partial file when a download stops, so the partial files are kept here instead:
``<dest>/.downloading/<name>/`` holds ``*.part`` files, and the next call continues each one with an HTTP Range
request. Only a complete, verified folder is moved to ``<dest>/<name>``, so a cancelled or failed download never
looks like a model.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from desktop_app.errors import CancelledError, ModelError
from desktop_app.models.safe_names import UnsafeName, check_name, check_relative, inside
from desktop_app.errors import printable

WEIGHT_SUFFIX = ".safetensors"
COMPONENT_SUFFIXES = (".json", ".safetensors", ".txt", ".model")  # configs, weights, merges/vocab, spiece
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf")
STAGING = ".downloading"
SKIPPED_COMPONENTS = {"safety_checker"}  # the loader never loads it (local generation, the user's own images)
_TRUE = {"1", "on", "yes", "true"}
APP_DEFAULT_OFFLINE = "DESKTOP_APP_DEFAULT_OFFLINE"  # set by cli.main (and the frozen app's entry) when it, not
# the user, chose offline
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Progress = Callable[[int, int], None]


class _Stop(Exception):
    """Raised from the byte counter to stop http_get at once when the user cancels."""


def folder_name(repo_id: str) -> str:
    return repo_id.strip().replace("/", "--")


def check_repo_id(repo_id: str) -> str:
    """``owner/name`` as the hub spells repo ids (letters, digits, '-', '_', '.'; at most 96 characters; no
    '--' or '..'), checked before anything: each part becomes a folder name (``owner--name``)."""
    if not isinstance(repo_id, str):
        raise ModelError("the repo id must be text, in the form owner/name")
    repo_id = repo_id.strip()
    parts = repo_id.split("/")
    ok = len(parts) == 2 and len(repo_id) <= 96 and all(_REPO_PART.fullmatch(part) for part in parts) \
        and ".." not in repo_id and "--" not in repo_id and not repo_id.endswith(".git")
    if ok:
        try:
            for part in parts:
                check_name(part, "repo id")
        except UnsafeName:
            ok = False
    if not ok:
        raise ModelError(f"{printable(repo_id, 100)} is not a Hugging Face repo id: use the form owner/name, "
                         "for example stabilityai/stable-diffusion-xl-base-1.0.")
    return repo_id


def is_offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def lift_app_offline_default() -> None:
    """Asking for a download is the user's opt-in to the network: lift the offline default that cli.main (or
    the installed app's entry point) set; it marks it with DESKTOP_APP_DEFAULT_OFFLINE=1. A user's own
    HF_HUB_OFFLINE=1 stays."""
    if os.environ.get(APP_DEFAULT_OFFLINE) == "1":
        from huggingface_hub import constants

        os.environ["HF_HUB_OFFLINE"] = "0"
        constants.HF_HUB_OFFLINE = False


@contextmanager
def app_offline_lifted():
    """``lift_app_offline_default`` for the duration of one download, then the offline default is back (the
    window goes on running: nothing else in it may reach the hub afterwards)."""
    from huggingface_hub import constants

    before = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    lift_app_offline_default()
    try:
        yield
    finally:
        if os.environ.get(APP_DEFAULT_OFFLINE) == "1":
            if before[0] is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = before[0]
            constants.HF_HUB_OFFLINE = before[1]


def _variant_base(name: str) -> str | None:
    """'unet/diffusion_pytorch_model.fp16.safetensors' -> 'unet/diffusion_pytorch_model.safetensors'."""
    stem, _, rest = name.rpartition("/")[2].partition(".")
    parts = rest.split(".")
    if len(parts) == 2 and parts[1] == "safetensors":
        folder = name.rpartition("/")[0]
        return f"{folder}/{stem}.safetensors" if folder else f"{stem}.safetensors"
    return None


def select_files(siblings, index: dict | None = None) -> dict[str, object]:
    """{local name: sibling} for the files a diffusers folder needs. ``index`` is model_index.json, if read."""
    names = {s.rfilename: s for s in siblings if _safe_listing(s.rfilename)}
    if "model_index.json" not in names:
        raise ModelError("not a diffusers model: the repo has no model_index.json (single-file checkpoints are "
                         "added from a downloaded file with `desktop-app models add`).")
    components = None
    if index is not None:
        components = {k for k, v in index.items() if isinstance(v, list) and v and v[0] is not None}
        components -= SKIPPED_COMPONENTS
    chosen: dict[str, object] = {"model_index.json": names["model_index.json"]}
    for name, sibling in names.items():
        folder = name.partition("/")[0] if "/" in name else ""
        if not folder or name.endswith(PICKLE_SUFFIXES) or not name.endswith(COMPONENT_SUFFIXES):
            continue
        if components is not None and folder not in components:
            continue
        if name.count("/") != 1:
            continue
        base = _variant_base(name)
        if base is not None:
            if base in names:
                continue  # the plain weights are there: skip the variant
            chosen.setdefault(base, sibling)  # variant-only: stored under the plain name diffusers loads
            continue
        chosen[name] = sibling
    if not any(local.endswith(WEIGHT_SUFFIX) for local in chosen):
        raise ModelError("the repo has no .safetensors weights; pickled weights (.bin, .ckpt) are not "
                         "downloaded, because they can run code.")
    return chosen


def _safe_listing(name: object) -> bool:
    """A file the hub lists is a relative path inside the repo; one with '..', an absolute path, a backslash
    or control characters cannot be part of a diffusers folder and is never written (a hostile listing)."""
    try:
        check_relative(name, "hub file")
    except UnsafeName:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, name: str, sibling) -> None:
    """Size for every file, sha256 for LFS files, the git blob id for the small ones; a bad file is deleted."""
    size = path.stat().st_size
    problem = None
    if sibling.size is not None and size != sibling.size:
        problem = f"its size is {size:,} bytes, the hub says {sibling.size:,}"
    elif sibling.lfs is not None:
        got = _sha256(path)
        if got != sibling.lfs.sha256:
            problem = f"its sha256 is {got}, the hub says {sibling.lfs.sha256}"
    elif sibling.blob_id:
        got = _git_blob_sha1(path)
        if got != sibling.blob_id:
            problem = f"its git hash is {got}, the hub says {sibling.blob_id}"
    if problem:
        path.unlink(missing_ok=True)
        raise ModelError(f"{name} failed verification ({problem}); the bad file was deleted. "
                         "Run the download again.")


def _byte_counter(on_bytes: Callable[[int], None], cancel: threading.Event | None):
    """A tqdm stand-in for http_get: it counts bytes and stops the transfer when ``cancel`` is set."""

    class ByteCounter:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int = 1) -> None:
            on_bytes(n)
            if cancel is not None and cancel.is_set():
                raise _Stop

        def close(self) -> None:
            pass

    return ByteCounter


def download(repo_id: str, dest_root: str | Path, progress: Progress | None = None,
             cancel: threading.Event | None = None, revision: str = "main", endpoint: str | None = None) -> Path:
    """Download ``repo_id`` at ``revision`` into ``dest_root/<owner>--<name>`` and return that folder.

    ``progress(done_bytes, total_bytes)`` is called as bytes arrive (resumed bytes count as done). ``cancel``
    stops within one chunk and raises CancelledError; the partial files stay for the next call. ModelError for
    offline mode, unknown repos, non-diffusers repos, failed verification and network failures. A complete
    folder from an earlier call is returned as it is, without a network call."""
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, HFValidationError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    repo_id = check_repo_id(repo_id)
    if is_offline():
        raise ModelError(f"Cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE is set). Unset it, or "
                         "copy the model folder here and add it with `desktop-app models add`.")
    dest_root = Path(dest_root).expanduser()
    final = dest_root / folder_name(repo_id)
    if (final / "model_index.json").is_file():
        return final
    staging = dest_root / STAGING / folder_name(repo_id)
    try:
        # 1. the file list, with sizes and LFS hashes, pinned to one commit
        api = HfApi(endpoint=endpoint)
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
        commit = info.sha or revision
        siblings = info.siblings or []
        files = select_files(siblings)
        total = sum(s.size or 0 for s in files.values())
        done = [sum(_have(staging, local, s) for local, s in files.items())]

        def on_bytes(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        on_bytes(0)
        counter = _byte_counter(on_bytes, cancel)
        # 2. model_index.json first: it names the component folders worth downloading
        index_file = staging / "model_index.json"
        if not index_file.is_file():
            _fetch(repo_id, files["model_index.json"], index_file, commit, endpoint, counter)
        wanted = select_files(siblings, _read_index(index_file, repo_id))
        for local in set(files) - set(wanted):
            done[0] -= _have(staging, local, files[local])
            total -= files[local].size or 0
        files = wanted
        # 3. each file: continue its .part, verify, move into place
        for local, sibling in sorted(files.items()):
            if cancel is not None and cancel.is_set():
                raise _Stop
            target = inside(staging, local, "hub file")
            if target.is_file():
                continue
            _fetch(repo_id, sibling, target, commit, endpoint, counter)
    except _Stop:
        raise CancelledError(f"Download of {repo_id} cancelled; the partial files stay in {staging} and the "
                             "next download continues them.") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelError(f"{repo_id} (revision {revision}) is not on the hub, or it is private or gated: "
                         f"{_first_line(exc)}") from None
    except EntryNotFoundError as exc:
        raise ModelError(f"A file of {repo_id} is missing on the hub: {_first_line(exc)}") from None
    except OfflineModeIsEnabled:
        raise ModelError(f"Cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE is set).") from None
    except (UnsafeName, HFValidationError) as exc:
        raise ModelError(f"Cannot download {repo_id}: {_first_line(exc)}") from None
    except (HfHubHTTPError, OSError, httpx2.HTTPError) as exc:
        raise ModelError(f"Download of {repo_id} failed: {_first_line(exc)} The partial files stay; run the "
                         "download again to continue.") from None
    # 4. complete and verified: only now does it appear where the library looks
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return final


def _have(staging: Path, local: str, sibling) -> int:
    """Bytes already on disk for this file (complete or partial), counted as done."""
    target = staging / local
    if target.is_file():
        return target.stat().st_size
    part = target.with_name(target.name + ".part")
    if part.is_file():
        return min(part.stat().st_size, sibling.size or 0)
    return 0


def _read_index(path: Path, repo_id: str) -> dict:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        path.unlink(missing_ok=True)
        raise ModelError(f"{repo_id}'s model_index.json is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise ModelError(f"{repo_id}'s model_index.json is not a JSON object.")
    return value


def _fetch(repo_id: str, sibling, target: Path, commit: str, endpoint: str | None, counter) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo_id, sibling.rfilename, revision=commit, endpoint=endpoint)
    headers = build_hf_headers()
    meta = get_hf_file_metadata(url, headers=headers, endpoint=endpoint)
    expected = sibling.size if sibling.size is not None else meta.size
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    resume = part.stat().st_size if part.is_file() else 0
    if expected is not None and resume > expected:
        part.unlink()
        resume = 0
    if expected is None or resume < expected:
        with part.open("ab") as f:
            http_get(meta.location or url, f, resume_size=resume, headers=headers, expected_size=expected,
                     displayed_filename=sibling.rfilename, tqdm_class=counter)
    verify(part, sibling.rfilename, sibling)
    part.rename(target)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(text if len(text) <= 300 else text[:299] + "…", 320)  # a server's text: no escapes
