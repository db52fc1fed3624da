"""Signed notifications (Standard Webhooks): the signature scheme and its verification,
VimQu webhooks (the task's and the account's URL) and Stupeflix callbacks signed with the
account's secret, retried with the same message id."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows.steps.notify import InvalidSignature, sign, signature_headers, verify_signature
from tests.test_vimqu_api import long_video, new_account, thumbnail_output, unique, video  # noqa: F401 (fixtures)

# The test vector of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_test_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {"Webhook-Id": SPEC_ID, "Webhook-Timestamp": str(SPEC_TIMESTAMP),
               "Webhook-Signature": f"v1,bm90IHRoaXMgb25l {SPEC_SIGNATURE}"}  # several signatures: one must match
    assert verify_signature(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP + 10) == {"test": 2432232314}


def test_verify_signature_refuses_altered_bodies_wrong_secrets_old_and_unsigned_messages():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = json.dumps({"data": {"id": "x", "status": "completed"}}).encode()
    headers = signature_headers(secret, body, "msg_1")
    assert verify_signature(body, headers, secret)["data"]["status"] == "completed"
    other = "whsec_" + base64.b64encode(b"o" * 24).decode()
    for args in ((body.replace(b"completed", b"failed"), headers, secret), (body, headers, other),
                 (body, {"webhook-id": "msg_1"}, secret),
                 (body, {**headers, "webhook-id": "msg_2"}, secret)):
        with pytest.raises(InvalidSignature):
            verify_signature(*args)
    with pytest.raises(InvalidSignature, match="old"):
        verify_signature(body, headers, secret, now=time.time() + 3600)


class SignedReceiver(BaseHTTPRequestHandler):
    """Records (headers, raw body) of POSTs by path; ``failures[path]`` answers 500 first."""

    received: dict[str, "queue.Queue[tuple[dict, bytes]]"] = {}
    failures: dict[str, int] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.setdefault(self.path, queue.Queue()).put((dict(self.headers), body))
        if self.failures.get(self.path, 0) > 0:
            self.failures[self.path] -= 1
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SignedReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    class Receiver:
        def url(self, path: str) -> str:
            return base + path

        def fail_first(self, path: str, times: int) -> None:
            SignedReceiver.failures[path] = times

        def wait(self, path: str, timeout: float = 60) -> tuple[dict, bytes]:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if path in SignedReceiver.received:
                    return SignedReceiver.received[path].get(timeout=max(0.1, deadline - time.monotonic()))
                time.sleep(0.05)
            raise AssertionError(f"nothing received on {path}")

    yield Receiver()
    server.shutdown()


def test_stupeflix_callback_is_signed_with_the_accounts_secret_and_retried_with_one_id(service, receiver):
    receiver.fail_first("/hello-signed", 2)
    status = service.run({"task_name": "hello", "name": "signed", "url_callback": receiver.url("/hello-signed")})
    tries = [receiver.wait("/hello-signed", 30) for _ in range(3)]
    secret = service.account["webhook_secret"]
    payloads = [verify_signature(body, headers, secret) for headers, body in tries]
    assert all(p["key"] == status["key"] and p["status"] == "success" for p in payloads)
    assert len({headers["webhook-id"] for headers, _ in tries}) == 1  # one message, three tries


def test_vimqu_webhooks_go_to_the_task_and_the_account_url_signed(service, receiver, s3_server, video):
    account_path, task_path = f"/account-{uuid.uuid4().hex[:6]}", f"/task-{uuid.uuid4().hex[:6]}"
    ivy = new_account(service, unique("ivy"), "--webhook-url", receiver.url(account_path))
    storage = ivy.storage(s3_server.storage("ivy s3"))
    created = ivy.post("/api/task", {"input": {"source_type": "url", "path": video},
                                     "outputs": [thumbnail_output(storage, reference_id="my-ref")],
                                     "webhook_url": receiver.url(task_path)})
    assert created.status_code == 201, created.text
    task_id = created.json()["data"]["id"]
    secret = ivy.credentials["webhook_secret"]
    for path in (task_path, account_path):
        headers, body = receiver.wait(path, 120)
        data = verify_signature(body, headers, secret)["data"]
        assert data["id"] == task_id and data["status"] in ("completed", "failed")
        assert data["outputs"][0]["reference_id"] == "my-ref"
        # the webhook is the run's last task: a read at that moment may still say processing
        deadline, read = time.monotonic() + 30, None
        while time.monotonic() < deadline and (read is None or read["status"] in ("active", "processing")):
            read = ivy.get(f"/api/task/{task_id}").json()["data"]
            time.sleep(0.1)
        assert data == read


def test_a_canceled_vimqu_task_gets_its_webhook(service, receiver, s3_server, long_video):
    """Needs flows/callbacks.py's send-errback flow to call ``notify.send_ending`` (VimQu
    runs are tagged ``errback`` when they have a webhook)."""
    path = f"/canceled-{uuid.uuid4().hex[:6]}"
    jack = new_account(service, unique("jack"))
    storage = jack.storage(s3_server.storage("jack s3"))
    created = jack.post("/api/task", {"input": {"source_type": "url", "path": long_video},
                                      "outputs": [{"storage_id": storage, "target_path": "/outputs/long",
                                                   "type": "video", "type_specific_config": {"crf": 30}}],
                                      "webhook_url": receiver.url(path)})
    task_id = created.json()["data"]["id"]
    jack.post(f"/api/task/{task_id}/cancel")
    headers, body = receiver.wait(path, 60)
    data = verify_signature(body, headers, jack.credentials["webhook_secret"])["data"]
    assert data["id"] == task_id and data["status"] == "canceled"
