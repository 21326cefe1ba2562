"""Open many idle, logged-in PostgreSQL protocol connections (trust auth).

Speaks just enough of the protocol: StartupMessage, then reads messages until
ReadyForQuery ('Z'); an ErrorResponse ('E') or anything asking for a password
counts as a failed login. Sockets are driven with selectors so that thousands
of logins proceed concurrently in one thread.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import struct
import time

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def tls_connect(host: str, port: int) -> ssl.SSLSocket:
    """SSLRequest, then a TLS handshake (certificate not checked), blocking."""
    s = socket.create_connection((host, port))
    s.sendall(SSL_REQUEST)
    if s.recv(1) != b"S":
        s.close()
        raise OSError("TLS refused")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s)


def startup_message(user: str, database: str) -> bytes:
    body = struct.pack("!i", 196608)
    for k, v in (("user", user), ("database", database), ("application_name", "idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


class _Conn:
    __slots__ = ("sock", "buf", "done", "error")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.done = False
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 5:
            kind = self.buf[0:1]
            (length,) = struct.unpack("!i", self.buf[1:5])
            if len(self.buf) < 1 + length:
                return
            body = self.buf[5:1 + length]
            self.buf = self.buf[1 + length:]
            if kind == b"Z":
                self.done = True
            elif kind == b"E":
                self.error = body.replace(b"\0", b" ").decode(errors="replace")[:160]
            elif kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                self.error = "server asked for a password"


def open_idle(host: str, port: int, user: str, database: str, n: int,
              batch: int = 200, timeout: float = 30.0,
              tls: bool = False) -> tuple[list[socket.socket], list[str]]:
    """Log N clients in and leave them idle (over TLS: each handshake is
    made first, one at a time). Returns (sockets, errors)."""
    if tls:
        timeout = max(timeout, 180.0)
    msg = startup_message(user, database)
    sockets: list[socket.socket] = []
    errors: list[str] = []
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout
    started = 0
    pending: dict[int, _Conn] = {}
    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and len(pending) < batch:
            s = None
            try:
                if tls:
                    s = tls_connect(host, port)
                else:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.connect((host, port))
                s.sendall(msg)
            except OSError as e:
                errors.append(f"connect: {e}")
                if s is not None:
                    s.close()
                started += 1
                continue
            s.setblocking(False)
            c = _Conn(s)
            pending[s.fileno()] = c
            sel.register(s, selectors.EVENT_READ, c)
            started += 1
        for key, _ in sel.select(timeout=1.0):
            c: _Conn = key.data
            try:
                data = c.sock.recv(65536)
                # Records TLS has decrypted already do not wake select.
                while isinstance(c.sock, ssl.SSLSocket) and c.sock.pending():
                    data += c.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError as e:
                data, c.error = b"", str(e)
            if data:
                c.feed(data)
            elif c.error is None:
                c.error = "connection closed during login"
            if c.done or c.error:
                sel.unregister(c.sock)
                del pending[c.sock.fileno()]
                if c.error:
                    errors.append(c.error)
                    c.sock.close()
                else:
                    sockets.append(c.sock)
    for c in pending.values():
        errors.append("login timed out")
        sel.unregister(c.sock)
        c.sock.close()
    sel.close()
    return sockets, errors


def close_all(sockets: list[socket.socket]) -> None:
    term = b"X\0\0\0\4"
    for s in sockets:
        try:
            s.send(term)
        except OSError:
            pass
        s.close()
