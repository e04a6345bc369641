"""The floor of the real loop: an Alertmanager webhook sink that restarts the alert's container
the instant the notification arrives, through the Docker API, and does nothing else (no
store, no guards, no verification).

    python bench/bare_sink.py --port 9999 [--stop-timeout 5]

POST any path with an Alertmanager notification: for each firing alert with a ``container``
label, the container is restarted (``POST /containers/<name>/restart?t=<stop-timeout>``, the
call remediator's Docker adapter makes) before the answer is sent. ``GET /events`` lists what
happened, wall-clock times in seconds: ``received`` (the request's body read), ``restart_call``
(the call begins) and ``restart_done`` (Docker answered) per container.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker

EVENTS: list[dict[str, Any]] = []
LOCK = threading.Lock()


def make_handler(client: docker.DockerClient, stop_timeout: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            pass

        def _answer(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            with LOCK:
                self._answer(200, {"events": list(EVENTS)})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received = time.time()
            try:
                note = json.loads(body)
            except ValueError:
                self._answer(400, {"error": "invalid_json", "detail": "body"})
                return
            for alert in note.get("alerts") or []:
                name = (alert.get("labels") or {}).get("container")
                if alert.get("status") != "firing" or not name:
                    continue
                event: dict[str, Any] = {"container": name, "received": received,
                                         "restart_call": time.time()}
                try:
                    client.api.restart(name, timeout=stop_timeout)
                    event["ok"] = True
                except docker.errors.DockerException as exc:
                    event["ok"], event["error"] = False, str(exc)
                event["restart_done"] = time.time()
                with LOCK:
                    EVENTS.append(event)
            self._answer(200, {"ok": True})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stop-timeout", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    client.ping()  # connected and warm before the first notification
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(client, args.stop_timeout))
    print(f"bare sink listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
