"""The gunicorn worker class of ``remediator serve``.

``BufferingThreadWorker`` is gunicorn's ``gthread`` worker with one change: a connection
gets a thread only once a whole request is in memory. The worker's poller loop reads
every socket without blocking, collects the request's headers (within
``server.header_timeout`` of its first byte) and its body (within ``server.body_timeout``
of the headers, up to the body cap), and only then hands the connection to a thread. Idle
keep-alive sockets, slow headers (slowloris) and trickled bodies therefore cost a few
bytes of buffer, never a thread; the threads only run the application.

Bounds: at most ``BUFFER_BUDGET`` bytes of incomplete requests per worker process (past
it a new byte answers 503 at once, which Alertmanager retries); headers up to
``MAX_HEADER_BYTES`` (431 above). A request the loop could not complete (a body over the
cap, a chunked body that does not end, framing gunicorn will refuse) still goes to a
thread, which answers it (413, 400) without waiting on the client: any read it does make
stops at the request's deadline, and the connection is then closed, not kept alive. A
closed connection with unread input is half-closed and drained for ``LINGER_SECONDS``
first, so that the client reads the answer instead of a reset.

Keep-alive is bounded: the response to a connection's ``keepalive_requests``-th request,
or to its first request once it is ``keepalive_lifetime`` old, says ``Connection: close``.
All workers accept from one listening socket, so a client that keeps its connections open
(Alertmanager, a load balancer) would otherwise stay on the worker that first accepted
them; reconnecting lets the kernel hand the connection to whichever worker waits in
``accept`` first; a worker that is running a request waits ``ACCEPT_DEFER_SECONDS``
before its ``accept``, so that an idle worker gets the connection. The close only ever comes with a
response, never on an idle connection, so a client cannot race it with a new request.

How far a buffer holds a request (framing, chunk frames) is :mod:`receiver.runtime.http_framing`.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from receiver.config import Config
from receiver.runtime.http_framing import MAX_HEADER_BYTES, Framing, canned, chunked_scan

BUFFER_BUDGET = 32 * 1024 * 1024
"""Bytes of not yet complete requests one worker process holds at most."""
LINGER_SECONDS = 2.0
READ_CHUNK = 64 * 1024
SWEEP_INTERVAL = 0.2
ACCEPT_DEFER_SECONDS = 0.002
"""How long a worker running a request lets an idle one accept a new connection first."""


class _ReadDeadline(BaseException):  # noqa: N818 - not an error the app may catch and answer
    """A thread's read of a client passed the request's deadline.

    A BaseException, so that the application cannot turn it into a response: the request
    is abandoned and the connection closed (a client such as Alertmanager then retries).
    """


class _Unreader(Unreader):
    """Gunicorn's parser reads through this: first the buffered bytes, then (rarely) the
    socket, never past the request's deadline and never while the loop owns the socket."""

    def __init__(self, conn: _Conn) -> None:
        super().__init__()
        self.conn = conn

    def chunk(self) -> bytes:
        conn = self.conn
        if conn.in_loop:
            return b""
        remaining = conn.deadline - time.monotonic()
        if remaining <= 0:
            raise _ReadDeadline
        conn.sock.settimeout(remaining)
        try:
            return bytes(conn.sock.recv(READ_CHUNK))
        except TimeoutError:
            raise _ReadDeadline from None
        finally:
            conn.sock.settimeout(conn.write_timeout)

    def take(self) -> bytes:
        data = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return data


class _Conn(TConn):
    """A client connection: owned by the poller loop (``in_loop``) or by one thread."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 deadline: float, write_timeout: float) -> None:
        super().__init__(cfg, sock, client, server)
        self.buf = bytearray()
        self.deadline = deadline
        self.write_timeout = write_timeout
        self.idle = False  # kept alive, waiting for the first byte of a next request
        self.in_loop = True
        self.complete = True  # the whole request was buffered when a thread got it
        self.parser: Any = None
        self.framing: Framing | None = None
        self.head_end = -1
        self.chunk_pos = 0
        self.requests = 0  # requests answered on this connection
        self.opened = time.monotonic()

    def init(self) -> None:
        self.initialized = True
        self.sock.setblocking(True)
        self.sock.settimeout(self.write_timeout)
        if self.parser is None:
            parser = RequestParser(self.cfg, self.sock, self.client)
            parser.unreader = _Unreader(self)
            self.parser = parser

    def reset_request(self) -> None:
        self.framing = None
        self.head_end = -1
        self.chunk_pos = 0


class BufferingThreadWorker(ThreadWorker):
    """gthread, but a thread gets a connection only with a complete request (module doc)."""

    header_timeout = 10.0
    body_timeout = 30.0
    max_body_bytes = 1024 * 1024
    keepalive_requests = 20
    keepalive_lifetime = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: set[_Conn] = set()
        self._buffered = 0
        self._next_sweep = 0.0

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl:
            raise RuntimeError("BufferingThreadWorker does not terminate TLS; use a proxy")

    # -- the loop's side -------------------------------------------------------------------

    def accept(self, server: Any, listener: socket.socket) -> None:
        if self.futures and self.cfg.workers > 1:
            # Busy with a request: give a worker that is not a moment to take the connection
            # first (every worker is woken for it; our accept() then finds none waiting).
            time.sleep(ACCEPT_DEFER_SECONDS)
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = _Conn(self.cfg, sock, client, server,
                     time.monotonic() + self.header_timeout, float(self.cfg.timeout))
        with self._lock:
            self.nr_conns += 1
            self._wait(conn, self._on_readable)

    def _wait(self, conn: _Conn, callback: Callable[[_Conn, Any], None]) -> None:
        conn.in_loop = True
        self._waiting.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(callback, conn))

    def _on_readable(self, conn: _Conn, _sock: Any) -> None:
        with self._lock:
            if conn not in self._waiting:
                return
            try:
                data = conn.sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            if conn.idle:
                conn.idle = False
                conn.deadline = time.monotonic() + self.header_timeout
            if self._buffered + len(data) > BUFFER_BUDGET:
                self._refuse(conn, 503)
                return
            conn.buf += data
            self._buffered += len(data)
            self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Hand the connection to a thread once its request is complete (lock held)."""
        buf = conn.buf
        if conn.framing is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._refuse(conn, 431)
                return
            framing = conn.framing = Framing(bytes(buf[:end]))
            conn.head_end = conn.chunk_pos = end + 4
            if not framing.valid:
                self._dispatch(conn, complete=False)  # gunicorn answers 400
                return
            if framing.has_body:
                conn.deadline = time.monotonic() + self.body_timeout
                if framing.expect_continue:
                    self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        framing = conn.framing
        if framing.chunked:
            try:
                conn.chunk_pos, done = chunked_scan(buf, conn.chunk_pos)
            except ValueError:
                self._dispatch(conn, complete=False)  # gunicorn answers 400
                return
            if done:
                self._dispatch(conn, complete=True)
            elif len(buf) - conn.head_end > 2 * self.max_body_bytes + MAX_HEADER_BYTES:
                self._dispatch(conn, complete=False)  # the app answers 413
        elif framing.length > self.max_body_bytes:
            self._dispatch(conn, complete=False)  # the app answers 413 without reading
        elif len(buf) >= conn.head_end + framing.length:
            self._dispatch(conn, complete=True)

    def _dispatch(self, conn: _Conn, *, complete: bool) -> None:
        self._unwatch(conn)
        self._buffered -= len(conn.buf)
        conn.complete = complete
        conn.idle = False
        conn.init()
        assert conn.parser is not None  # noqa: S101 - set by init()
        conn.parser.unreader.unread(bytes(conn.buf))
        conn.buf = bytearray()
        conn.reset_request()
        conn.in_loop = False
        self.enqueue_req(conn)

    def enqueue_req(self, conn: _Conn) -> None:
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def _unwatch(self, conn: _Conn) -> None:
        self._waiting.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _send(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # best effort: a few bytes into an empty send buffer
        except OSError:
            pass

    def _refuse(self, conn: _Conn, status: int) -> None:
        self._send(conn, canned(status))
        self._linger(conn)

    def _linger(self, conn: _Conn) -> None:
        """Half-close and discard input for a moment, so the client reads our answer."""
        self._unwatch(conn)
        self._buffered -= len(conn.buf)
        conn.buf = bytearray()
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._wait(conn, self._on_linger_readable)

    def _on_linger_readable(self, conn: _Conn, _sock: Any) -> None:
        with self._lock:
            if conn not in self._waiting:
                return
            try:
                data = conn.sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self._buffered -= len(conn.buf)
        conn.buf = bytearray()
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self) -> None:
        """Called on every turn of the loop: close connections past their deadline."""
        super().murder_keepalived()
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        with self._lock:
            for conn in [c for c in self._waiting if c.deadline <= now]:
                self._close(conn)

    # -- the threads' side -----------------------------------------------------------------

    def handle(self, conn: _Conn) -> tuple[bool, _Conn]:
        try:
            result: tuple[bool, _Conn] = super().handle(conn)
        except _ReadDeadline:
            self.log.debug("client too slow, closing: %s", conn.client)
            return (False, conn)
        return result

    def handle_request(self, req: Any, conn: _Conn) -> bool:
        conn.requests += 1
        if not conn.complete:
            req.force_close()  # input may still follow: answer with Connection: close
        elif (conn.requests >= self.keepalive_requests
              or time.monotonic() - conn.opened >= self.keepalive_lifetime):
            req.force_close()  # bounded keep-alive: the client reconnects (module doc)
        return bool(super().handle_request(req, conn))

    def finish_request(self, fs: Any) -> None:
        conn: _Conn = fs.conn
        with self._lock:
            if fs.cancelled():
                self._close(conn)
                return
            try:
                keepalive, _ = fs.result()
            except Exception:  # noqa: BLE001 - gunicorn's own policy: close on any error
                self._close(conn)
                return
            if keepalive and self.alive and self._resume(conn):
                return
            if conn.complete:
                self._close(conn)
            else:
                self._linger(conn)

    def _resume(self, conn: _Conn) -> bool:
        """Back to the loop for the next request on a kept-alive connection (lock held)."""
        assert conn.parser is not None  # noqa: S101 - a thread has handled a request
        conn.in_loop = True  # from here the parser only sees buffered bytes
        mesg = conn.parser.mesg
        try:
            if mesg is not None:  # discard what the app left unread of the body (buffered)
                while mesg.body.read(READ_CHUNK):
                    pass
        except NoMoreData:
            return False
        unreader = conn.parser.unreader
        leftover = unreader.take() if isinstance(unreader, _Unreader) else b""
        conn.sock.setblocking(False)
        conn.buf = bytearray(leftover)
        self._buffered += len(leftover)
        conn.reset_request()
        conn.idle = not leftover
        conn.deadline = time.monotonic() + (
            self.cfg.keepalive if conn.idle else self.header_timeout
        )
        self._wait(conn, self._on_readable)
        if leftover:
            self._advance(conn)  # a pipelined request may already be complete
        return True


def worker_class(config: Config) -> type[BufferingThreadWorker]:
    """The worker class with this configuration's timeouts and body cap."""

    class RemediatorWorker(BufferingThreadWorker):
        header_timeout = config.server.header_timeout.total_seconds()
        body_timeout = config.server.body_timeout.total_seconds()
        max_body_bytes = config.server.max_body_bytes
        keepalive_requests = config.server.keepalive_requests
        keepalive_lifetime = config.server.keepalive_lifetime.total_seconds()

    return RemediatorWorker
