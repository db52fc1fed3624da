"""Callback receivers that answer with a redirect: 301, 302, 307 and 308 are followed (the
same body and signed headers POSTed again, each hop's address checked as fetch does, a
bounded number of hops); 303 counts as delivered; the outcome on the task's run says where
the notification went."""

from __future__ import annotations

import queue
from http.server import BaseHTTPRequestHandler
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from deployments.local import serve_http
from flows.steps.notify import verify_signature
from tests.test_callback_delivery import delivery_run
from tests.test_callbacks import deliveries


class Moved(BaseHTTPRequestHandler):
    """``/<code>?to=URL`` answers ``code`` with ``Location: URL``; ``/loop`` redirects to
    itself; anything else records the POST (method, headers, body) and answers 200."""

    received: "queue.Queue[tuple[str, str, dict, bytes]]" = queue.Queue()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        parts = urlsplit(self.path)
        code = parts.path.strip("/")
        if code.isdigit():
            self.send_response(int(code))
            self.send_header("Location", parse_qs(parts.query)["to"][0])
        elif code == "loop":
            self.send_response(307)
            self.send_header("Location", "/loop")
        else:
            self.received.put((self.command, self.path, dict(self.headers), body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[str, str]]:
    """The old address and the new one (another port: a receiver that moved)."""
    with serve_http(Moved) as old, serve_http(Moved) as new:
        yield old, new


def drain() -> list[tuple[str, str, dict, bytes]]:
    found = []
    while not Moved.received.empty():
        found.append(Moved.received.get_nowait())
    return found


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_callback_redirected_is_posted_again_to_the_new_address(service, receivers, code):
    old, new = receivers
    drain()
    target = f"{new}/hooks/{code}"
    status = service.run({"task_name": "hello", "name": f"moved {code}", "url_callback": f"{old}/{code}?to={target}"})
    assert status["status"] == "success"
    method, path, headers, body = Moved.received.get(timeout=30)
    assert (method, path) == ("POST", f"/hooks/{code}")
    received = verify_signature(body, headers, service.account["webhook_secret"])  # the signed body, unchanged
    assert received["key"] == status["key"] and received["result"] == f"Hello moved {code}"
    port = urlsplit(new).port
    assert deliveries(service, status["key"], "delivered") == [
        f"callback to 127.0.0.1: delivered (HTTP 200 from 127.0.0.1:{port}, redirected by HTTP {code}) after 1 try"]


def test_a_redirect_to_a_refused_address_is_not_followed_nor_tried_again(service, receivers):
    old, _ = receivers
    drain()
    status = service.run({"task_name": "hello", "name": "metadata",
                          "url_callback": f"{old}/302?to=http://169.254.169.254/latest/meta-data/"})
    [outcome] = deliveries(service, status["key"], "refused")
    assert outcome.startswith("callback to 127.0.0.1: refused, not sent: redirected by HTTP 302 to 169.254.169.254:"
                              " address 169.254.169.254 of host 169.254.169.254 is private"), outcome
    assert "meta-data" not in outcome  # a redirect's path is not shown (it may hold a token)
    assert delivery_run(service, status["key"]) is None  # refused: no later tries
    assert drain() == []


def test_a_redirect_loop_gives_up_naming_the_limit(service, receivers):
    old, _ = receivers
    status = service.run({"task_name": "hello", "name": "loop", "url_callback": f"{old}/loop"})
    [outcome] = deliveries(service, status["key"], "gave up")
    assert outcome == ("callback to 127.0.0.1: gave up after 5 tries: too many redirects (more than 5),"
                       f" the last HTTP 307 to 127.0.0.1:{urlsplit(old).port}")


def test_see_other_counts_as_delivered_without_posting_elsewhere(service, receivers):
    old, new = receivers
    drain()
    status = service.run({"task_name": "hello", "name": "see other",
                          "url_callback": f"{old}/303?to={new}/elsewhere"})
    assert deliveries(service, status["key"], "delivered") == [
        "callback to 127.0.0.1: delivered (HTTP 303) after 1 try"]
    assert drain() == [] and status["status"] == "success"
