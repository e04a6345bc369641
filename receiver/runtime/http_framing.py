"""How much of an HTTP/1.1 request is in a buffer: the head's framing (length, chunked,
``Expect: 100-continue``), the chunked body's frames, and the few canned answers the
poller loop of :mod:`receiver.runtime.http_worker` sends without a thread. Pure functions
over bytes, no sockets."""

from __future__ import annotations

MAX_HEADER_BYTES = 64 * 1024
"""Request line and headers; real requests carry well under 8 KiB."""

_CANNED = {
    431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


def canned(status: int) -> bytes:
    text = _CANNED[status]
    body = b'{"error": "' + text.split(b" ", 1)[1].lower().replace(b" ", b"_") + b'"}\n'
    return (b"HTTP/1.1 " + text + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class Framing:
    """What the loop needs to know of a request head to tell when its body is complete."""

    __slots__ = ("length", "chunked", "valid", "expect_continue")

    def __init__(self, head: bytes) -> None:
        self.length = 0
        self.chunked = False
        self.valid = True
        self.expect_continue = False
        lines = head.split(b"\r\n")
        http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            key = name.strip().lower()
            if key == b"content-length":
                lengths.append(value.strip())
            elif key == b"transfer-encoding":
                codings.extend(v.strip().lower() for v in value.split(b","))
            elif key == b"expect" and value.strip().lower() == b"100-continue" and http11:
                self.expect_continue = True
        if codings:
            self.chunked = codings[-1] == b"chunked"
            self.valid = self.chunked and not lengths
        elif lengths:
            self.valid = len(lengths) == 1 and lengths[0].isdigit()
            self.length = int(lengths[0]) if self.valid else 0

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


def chunked_scan(buf: bytearray, pos: int) -> tuple[int, bool]:
    """Walk chunk frames from ``pos``: (where to resume, complete). ValueError if malformed.

    Complete means the last chunk and the trailer section are all in ``buf``; the resume
    position is then the end of the message.
    """
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 4096:
                raise ValueError("chunk size line too long")
            return pos, False
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ValueError("invalid chunk size")
        size = int(size_text, 16)
        if size == 0:
            if buf[eol + 2 : eol + 4] == b"\r\n":
                return eol + 4, True
            end = buf.find(b"\r\n\r\n", eol + 2)
            return (end + 4, True) if end >= 0 else (pos, False)
        data_end = eol + 2 + size
        if len(buf) < data_end + 2:
            return pos, False
        if buf[data_end : data_end + 2] != b"\r\n":
            raise ValueError("chunk without terminator")
        pos = data_end + 2
