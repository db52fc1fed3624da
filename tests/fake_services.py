"""Small local stand-ins for YouTube, Vimeo and the Facebook Graph API, on one HTTP server
on 127.0.0.1 (paths ``/youtube``, ``/vimeo``, ``/facebook``).

Each speaks exactly the part of its protocol the uploaders use, records what it received
(the bytes, the metadata, every chunk's offset and length) and fails on purpose when a test
queues a failure: ``drop`` (close the connection half-way through a chunk, keeping what
arrived), ``lose`` (YouTube: drop and forget everything: a 308 without Range), ``503``,
``429``, ``half`` (tus: store half a PATCH and say so), ``401``, ``quota`` (YouTube 403
quotaExceeded), ``upload_limit`` (YouTube 400 uploadLimitExceeded), ``rate_limit``
(Facebook code 4). ``resent`` lists every chunk that started before what the server had
already confirmed to the client: a correct client never sends those.

    with FakeServices() as fakes:
        LocalService(home, **fakes.env)  # the service's base-URL settings point here
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

YOUTUBE_TOKEN = "ya29.fake-youtube-token"
YOUTUBE_KEY = "AIza" + "F" * 35
VIMEO_TOKEN = "fake-vimeo-oauth2-token"
FACEBOOK_TOKEN = "EAAfakefacebooktoken"
FACEBOOK_SECRET = "fake-app-secret"
FACEBOOK_CHUNK = 200_000  # bytes the Graph fake asks for per transfer


@dataclass
class Upload:
    """One upload session on a fake service."""

    id: str
    total: int
    metadata: dict[str, Any] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    confirmed: int = 0  # bytes the server told the client it has
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of each data request
    resent: list[tuple[int, int]] = field(default_factory=list)  # chunks starting before `confirmed`
    done: bool = False


@dataclass
class Service:
    """What one fake service received, and the failures queued for it."""

    uploads: dict[str, Upload] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # consumed one per data request
    start_failures: list[str] = field(default_factory=list)  # consumed one per session start / API call
    free_space: int = 10**9  # Vimeo's quota

    def upload(self) -> Upload:
        """The one upload of the test (asserts there was exactly one)."""
        assert len(self.uploads) == 1, list(self.uploads)
        return next(iter(self.uploads.values()))

    def next_failure(self) -> str | None:
        return self.failures.pop(0) if self.failures else None

    def next_start_failure(self) -> str | None:
        return self.start_failures.pop(0) if self.start_failures else None


class FakeServices:
    """The three fakes on one server; ``env`` points the service's settings at them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.youtube = Service()
        self.vimeo = Service()
        self.facebook = Service()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.env = {
            "DRAGONFLOW_YOUTUBE_API_URL": f"{self.url}/youtube",
            "DRAGONFLOW_VIMEO_API_URL": f"{self.url}/vimeo",
            "DRAGONFLOW_FACEBOOK_GRAPH_URL": f"{self.url}/facebook",
            "DRAGONFLOW_FACEBOOK_GRAPH_VERSION": "v23.0",
            "DRAGONFLOW_UPLOAD_CHUNK_BYTES": str(256 * 1024),
            "DRAGONFLOW_UPLOAD_RETRIES": "3",
            "DRAGONFLOW_UPLOAD_RETRY_DELAY": "0.05",
            "DRAGONFLOW_UPLOAD_TASK_RETRIES": "0",
        }

    def reset(self) -> None:
        with self.lock:
            self.youtube, self.vimeo, self.facebook = Service(), Service(), Service()

    def __enter__(self) -> "FakeServices":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _google_error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "errors": [{"reason": reason, "message": message}]}}


def _graph_error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


def _handler(fakes: FakeServices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        # -- helpers -------------------------------------------------------------------
        @property
        def parts(self):
            return urlsplit(self.path)

        @property
        def query(self) -> dict[str, str]:
            return {k: v[-1] for k, v in parse_qs(self.parts.query).items()}

        def length(self) -> int:
            return int(self.headers.get("Content-Length") or 0)

        def body(self) -> bytes:
            return self.rfile.read(self.length())

        def drop(self, keep: int) -> bytes:
            """Read ``keep`` bytes of the body, then cut the connection."""
            received = self.rfile.read(keep)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return received

        def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None and not isinstance(body, bytes):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def record(self, service: Service) -> None:
            service.requests.append({"method": self.command, "path": self.parts.path, "query": self.query,
                                     "headers": dict(self.headers.items())})

        def route(self) -> None:
            path = self.parts.path
            try:
                with fakes.lock:
                    if path.startswith("/youtube/"):
                        self.record(fakes.youtube)
                        return self.youtube(fakes.youtube, path[len("/youtube"):])
                    if path.startswith("/vimeo/"):
                        self.record(fakes.vimeo)
                        return self.vimeo(fakes.vimeo, path[len("/vimeo"):])
                    if path.startswith("/facebook/"):
                        self.record(fakes.facebook)
                        return self.facebook(fakes.facebook, path[len("/facebook"):])
                self.reply(404, {"error": "no such fake"})
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = route

        # -- YouTube Data API v3, resumable upload -----------------------------------
        def youtube(self, service: Service, path: str) -> None:
            if path != "/upload/youtube/v3/videos":
                return self.reply(404, _google_error(404, "notFound", "no such path"))
            if self.command == "POST":
                return self.youtube_start(service)
            upload = service.uploads.get(self.query.get("upload_id", ""))
            if self.command != "PUT" or upload is None:
                return self.reply(404, _google_error(404, "notFound", "no such upload session"))
            content_range = self.headers.get("Content-Range", "")
            if content_range.startswith("bytes */"):
                self.body()
                return self.youtube_state(upload)
            span, _, total = content_range.removeprefix("bytes ").partition("/")
            first, _, last = span.partition("-")
            start, length = int(first), self.length()
            assert int(total) == upload.total and int(last) == start + length - 1, content_range
            upload.chunks.append((start, length))
            if start < upload.confirmed:
                upload.resent.append((start, length))
            if start > len(upload.data):
                self.body()
                return self.reply(400, _google_error(400, "badContent", "chunk starts past the stored bytes"))
            failure = service.next_failure()
            if failure in ("drop", "lose"):
                received = self.drop(length // 2)
                del upload.data[start:]
                upload.data += received
                if failure == "lose":
                    upload.data.clear()
                    upload.confirmed = 0
                return
            data = self.body()
            if failure in ("503", "429"):
                return self.reply(int(failure), _google_error(int(failure), "backendError", "try again"))
            del upload.data[start:]
            upload.data += data
            return self.youtube_state(upload)

        def youtube_start(self, service: Service) -> None:
            metadata = json.loads(self.body() or b"{}")
            failure = service.next_start_failure()
            if failure == "401" or self.headers.get("Authorization") != f"Bearer {YOUTUBE_TOKEN}":
                return self.reply(401, _google_error(401, "authError", "Invalid Credentials"))
            if failure == "quota":
                return self.reply(403, _google_error(403, "quotaExceeded", "The request cannot be completed"
                                                      " because you have exceeded your quota."))
            if failure == "upload_limit":
                return self.reply(400, _google_error(400, "uploadLimitExceeded", "The user has exceeded the"
                                                      " number of videos they may upload."))
            if failure == "503":
                return self.reply(503, _google_error(503, "backendError", "try again"))
            query = self.query
            assert query.get("uploadType") == "resumable" and query.get("part") == "snippet,status", query
            upload = Upload(uuid.uuid4().hex, int(self.headers["X-Upload-Content-Length"]),
                            {**metadata, "key": query.get("key"),
                             "content_type": self.headers.get("X-Upload-Content-Type")})
            service.uploads[upload.id] = upload
            host = self.headers["Host"]
            self.reply(200, b"", {"Location": f"http://{host}/youtube/upload/youtube/v3/videos"
                                              f"?uploadType=resumable&upload_id={upload.id}"})

        def youtube_state(self, upload: Upload) -> None:
            stored = len(upload.data)
            upload.confirmed = stored
            if stored == upload.total:
                upload.done = True
                return self.reply(201, {"kind": "youtube#video", "id": f"yt{upload.id[:8]}",
                                        **{k: upload.metadata.get(k) for k in ("snippet", "status")}})
            headers = {"Range": f"bytes=0-{stored - 1}"} if stored else {}
            self.reply(308, b"", headers)

        # -- Vimeo API v3 and tus 1.0 ------------------------------------------------
        def vimeo(self, service: Service, path: str) -> None:
            if path.startswith("/tus/"):
                return self.tus(service, service.uploads.get(path[len("/tus/"):]))
            data = self.body()
            failure = service.next_start_failure()
            if failure == "401" or self.headers.get("Authorization") != f"Bearer {VIMEO_TOKEN}":
                return self.reply(401, {"error": "You must provide a valid authenticated access token."})
            if failure in ("503", "429"):
                return self.reply(int(failure), {"error": "try again"})
            if self.command == "GET" and path == "/me":
                return self.reply(200, {"upload_quota": {"space": {"free": service.free_space, "max": 10**10,
                                                                   "used": 10**10 - service.free_space}}})
            if self.command == "POST" and path == "/me/videos":
                body = json.loads(data)
                assert body["upload"]["approach"] == "tus", body
                video = uuid.uuid4().int % 10**9
                upload = Upload(str(video), int(body["upload"]["size"]), {"create": body})
                service.uploads[upload.id] = upload
                return self.reply(200, {"uri": f"/videos/{video}", "link": f"https://vimeo.com/{video}",
                                        "upload": {"approach": "tus", "size": upload.total,
                                                   "upload_link": f"http://{self.headers['Host']}/vimeo/tus/{video}"}})
            if self.command == "PATCH" and path.startswith("/videos/"):
                upload = service.uploads[path.rsplit("/", 1)[-1]]
                upload.metadata["patch"] = json.loads(data)
                return self.reply(200, {"uri": path})
            self.reply(404, {"error": "not found"})

        def tus(self, service: Service, upload: Upload | None) -> None:
            if upload is None:
                self.body()
                return self.reply(404, b"")
            assert self.headers.get("Tus-Resumable") == "1.0.0", dict(self.headers)
            offset_headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(len(upload.data))}
            if self.command == "HEAD":
                upload.confirmed = len(upload.data)
                return self.reply(200, None, {**offset_headers, "Upload-Length": str(upload.total),
                                              "Cache-Control": "no-store"})
            assert self.command == "PATCH"
            assert self.headers.get("Content-Type") == "application/offset+octet-stream"
            offset, length = int(self.headers["Upload-Offset"]), self.length()
            upload.chunks.append((offset, length))
            if offset < upload.confirmed:
                upload.resent.append((offset, length))
            if offset != len(upload.data):
                self.body()
                return self.reply(409, b"", offset_headers)
            failure = service.next_failure()
            if failure == "drop":
                upload.data += self.drop(length // 2)
                return
            data = self.body()
            if failure in ("503", "429"):
                return self.reply(int(failure), b"")
            upload.data += data[: length // 2] if failure == "half" else data
            upload.confirmed = len(upload.data)
            upload.done = upload.confirmed == upload.total
            self.reply(204, None, {"Tus-Resumable": "1.0.0", "Upload-Offset": str(len(upload.data))})

        # -- Facebook Graph API video upload -------------------------------------------
        def form(self) -> dict[str, Any]:
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = BytesParser(policy=HTTP).parsebytes(head + self.body())
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                fields[name] = payload if part.get_filename() else payload.decode()
            return fields

        def facebook(self, service: Service, path: str) -> None:
            version, _, rest = path.strip("/").partition("/")
            target, _, edge = rest.partition("/")
            if version != "v23.0" or edge != "videos" or self.command != "POST":
                self.body()
                return self.reply(400, _graph_error(100, f"unknown path {path}"))
            multipart = self.headers.get("Content-Type", "").startswith("multipart/")
            if multipart and service.failures and service.failures[0] == "drop":  # a data request cut
                service.failures.pop(0)
                self.drop(self.length() // 2)
                return
            fields = self.form() if multipart else {k: v[-1] for k, v in parse_qs(self.body().decode()).items()}
            phase = fields.get("upload_phase")
            start_failure = service.next_start_failure() if phase in (None, "start") else None
            token = fields.get("access_token")
            if start_failure == "401" or token != FACEBOOK_TOKEN:
                return self.reply(400, _graph_error(190, "Error validating access token: Session has expired."))
            if start_failure == "rate_limit":
                return self.reply(400, _graph_error(4, "Application request limit reached"))
            proof = fields.get("appsecret_proof")
            expected = hmac.new(FACEBOOK_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
            if proof is not None and proof != expected:
                return self.reply(400, _graph_error(100, "Invalid appsecret_proof provided in the API argument"))
            if phase is None:  # one multipart POST with the whole file
                if service.next_failure() == "503":
                    return self.reply(503, _graph_error(2, "Service temporarily unavailable", is_transient=True))
                video = str(uuid.uuid4().int % 10**15)
                upload = Upload(video, len(fields["source"]), {**fields, "source": None})
                upload.data += fields["source"]
                upload.chunks.append((0, len(fields["source"])))
                upload.done = True
                service.uploads[video] = upload
                return self.reply(200, {"id": video})
            if phase == "start":
                video = str(uuid.uuid4().int % 10**15)
                upload = Upload(video, int(fields["file_size"]), {"start": {k: v for k, v in fields.items()
                                                                            if k != "access_token"}})
                upload.metadata["session"] = session = f"s{video}"
                service.uploads[video] = upload
                return self.reply(200, {"video_id": video, "upload_session_id": session, "start_offset": "0",
                                        "end_offset": str(min(FACEBOOK_CHUNK, upload.total))})
            upload = next((u for u in service.uploads.values() if u.metadata.get("session")
                           == fields.get("upload_session_id")), None)
            if upload is None:
                return self.reply(400, _graph_error(6000, "There was a problem uploading your video file."))
            if phase == "transfer":
                start, chunk = int(fields["start_offset"]), fields["video_file_chunk"]
                upload.chunks.append((start, len(chunk)))
                if start < upload.confirmed:
                    upload.resent.append((start, len(chunk)))
                failure = service.next_failure()
                if failure == "503":
                    return self.reply(503, _graph_error(2, "Service temporarily unavailable", is_transient=True))
                if start != len(upload.data):
                    return self.reply(400, _graph_error(6000, "wrong offset", error_subcode=1363037,
                                                        error_data={"start_offset": len(upload.data),
                                                                    "end_offset": min(len(upload.data)
                                                                                      + FACEBOOK_CHUNK,
                                                                                      upload.total)}))
                upload.data += chunk
                upload.confirmed = len(upload.data)
                return self.reply(200, {"start_offset": str(upload.confirmed),
                                        "end_offset": str(min(upload.confirmed + FACEBOOK_CHUNK, upload.total))})
            if phase == "finish":
                upload.metadata["finish"] = {k: v for k, v in fields.items() if k != "access_token"}
                upload.done = len(upload.data) == upload.total
                return self.reply(200, {"success": upload.done})
            self.reply(400, _graph_error(100, f"unknown upload_phase {phase}"))

    return Handler
