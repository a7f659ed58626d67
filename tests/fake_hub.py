"""A local stand-in for the Hugging Face hub, serving one repo folder over HTTP on 127.0.0.1.

It answers what huggingface_hub calls for a download (read from huggingface_hub/hf_api.py and file_download.py):
- ``GET /api/models/{repo}/revision/{rev}?blobs=true``: the model info, with ``sha`` (the commit) and
  ``siblings`` (``rfilename``, ``size``, ``blobId``, and ``lfs`` {``size``, ``sha256``, ``pointerSize``} for
  .safetensors files, as the hub stores weights in LFS);
- ``HEAD /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the sha256 for LFS files, the git blob id
  otherwise), ``Content-Length``;
- ``GET /{repo}/resolve/{rev}/{path}``: the bytes, honouring ``Range: bytes=N-`` with 206 and Content-Range.
Unknown repos get 404 with ``X-Error-Code: RepoNotFound``. Faults can be injected per file: ``cut`` (send the
headers for the whole file, then only N bytes, then close the connection), ``fail_after_cut`` (answer 500 to the
retries after a cut, so the download call gives up), ``corrupt`` (serve other bytes than the metadata describes).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_SD_REPO = "someone/tiny-sd"  # the repo id tests serve the tiny diffusers folder as


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class FakeHub:
    repo_id: str
    folder: Path
    cut: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before the connection is cut (once)
    fail_after_cut: bool = False
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, file, Range)
    served: dict[str, int] = field(default_factory=dict)  # file -> body bytes sent
    url: str = ""
    extra: dict[str, bytes] = field(default_factory=dict)  # listed and served beside the folder's files (a
    # hostile listing: names such as ../escape.json that no real repo holds)

    def files(self) -> dict[str, Path]:
        return {p.relative_to(self.folder).as_posix(): p for p in sorted(self.folder.rglob("*")) if p.is_file()}

    def data(self, name: str) -> bytes | None:
        if name in self.extra:
            return self.extra[name]
        path = self.files().get(name)
        return path.read_bytes() if path is not None else None

    def info(self) -> dict:
        siblings = []
        for name in [*self.files(), *self.extra]:
            data = self.data(name)
            entry = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
            if name.endswith(".safetensors"):
                entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(entry)
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": COMMIT, "private": False,
                "siblings": siblings}

    def gets(self, name: str) -> list[str | None]:
        """The Range headers of the GET requests for ``name``."""
        return [r for method, file, r in self.requests if method == "GET" and file == name]

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._resolve(head=True)

            def do_GET(self):
                if urlparse(self.path).path.startswith("/api/models/"):
                    return self._api()
                self._resolve(head=False)

            def _send(self, status, headers, body=b""):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _not_found(self, code):
                body = json.dumps({"error": f"{code}"}).encode()
                self._send(404, {"X-Error-Code": code, "Content-Type": "application/json",
                                 "Content-Length": str(len(body))}, body)

            def _api(self):
                path = unquote(urlparse(self.path).path)[len("/api/models/"):]
                repo = path.split("/revision/")[0]
                if repo != hub.repo_id:
                    return self._not_found("RepoNotFound")
                body = json.dumps(hub.info()).encode()
                self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body)

            def _resolve(self, head):
                path = unquote(urlparse(self.path).path).lstrip("/")
                match = re.fullmatch(r"(.+?)/resolve/([^/]+)/(.+)", path)
                if not match or match.group(1) != hub.repo_id:
                    return self._not_found("RepoNotFound")
                name = match.group(3)
                data = hub.data(name)
                if data is None:
                    return self._not_found("EntryNotFound")
                etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else git_blob_sha1(data)
                if name in hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
                range_header = self.headers.get("Range")
                hub.requests.append(("HEAD" if head else "GET", name, range_header))
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                if head:
                    return self._send(200, {**headers, "Content-Length": str(len(data))})
                if name in hub.cut and hub.cut[name] < 0:  # the cut happened: the hub is now failing
                    return self._send(500, {"Content-Length": "0"})
                start, status = 0, 200
                if range_header:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                headers["Content-Length"] = str(len(body))
                if name in hub.cut and hub.cut[name] > 0:
                    sent = body[:hub.cut[name]]
                    hub.cut[name] = -1 if hub.fail_after_cut else 0
                    if hub.cut[name] == 0:
                        del hub.cut[name]
                    self._send(status, headers, sent)
                    hub.served[name] = hub.served.get(name, 0) + len(sent)
                    self.close_connection = True
                    return
                self._send(status, headers, body)
                hub.served[name] = hub.served.get(name, 0) + len(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def heal(self) -> None:
        """The hub works again (after a cut with fail_after_cut)."""
        self.cut = {k: v for k, v in self.cut.items() if v > 0}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
