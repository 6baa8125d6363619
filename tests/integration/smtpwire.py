"""A small raw-socket SMTP client for the integration tests: it sends exactly the bytes it is
given and reads replies until a given number of complete replies have arrived.

    w = Wire(srv.port)                  # connects and reads the 220 greeting
    w.send(b"EHLO a\\r\\nNOOP\\r\\n")
    ehlo, noop = w.replies(2)           # Reply objects, in order
    assert noop.code == 250
    w.assert_closed()                   # the server closed the connection (recv gave b"")

Every read has a timeout, so a server that does not answer fails the test instead of hanging.
"""
import socket
import time

DEFAULT_TIMEOUT = 5.0


class Reply:
    """One complete SMTP reply: the code, its lines (text without CRLF), and where it ended."""

    def __init__(self, lines, recv_index):
        self.lines = lines
        self.code = int(lines[-1][:3])
        self.recv_index = recv_index  # which recv() completed it (counted per connection)

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def last(self):
        return self.lines[-1]

    def __repr__(self):
        return "Reply(%r)" % (self.text,)


class Wire:
    def __init__(self, port, host="127.0.0.1", source=None, timeout=DEFAULT_TIMEOUT,
                 greet=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""
        self.nrecv = 0  # recv() calls that returned data
        self.eof = False
        self.greeting = None
        if greet:
            self.greeting = self.replies(1)[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.nrecv += 1
        else:
            self.eof = True
        self.buf += chunk
        return chunk

    def _take_reply(self):
        """Removes one complete reply from the buffer, or returns None."""
        lines = []
        pos = 0
        while True:
            end = self.buf.find(b"\r\n", pos)
            if end < 0:
                return None
            line = self.buf[pos:end].decode("utf-8", "replace")
            lines.append(line)
            pos = end + 2
            if len(line) < 4 or line[3] != "-":
                self.buf = self.buf[pos:]
                return Reply(lines, self.nrecv)

    def replies(self, n, timeout=None):
        """Reads until n complete replies have arrived; returns them in order."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        got = []
        while len(got) < n:
            r = self._take_reply()
            if r is not None:
                got.append(r)
                continue
            if self.eof:
                raise AssertionError("connection closed after %d of %d replies: %r, left %r"
                                     % (len(got), n, got, self.buf))
            try:
                self._recv(deadline)
            except socket.timeout:
                raise AssertionError("timed out after %d of %d replies: %r, left %r"
                                     % (len(got), n, got, self.buf)) from None
        return got

    def reply(self, timeout=None):
        return self.replies(1, timeout)[0]

    def cmd(self, line, timeout=None):
        """Sends one command line (CRLF added) and returns its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def closed(self, timeout=None):
        """True when the server closes the connection (recv returns b"") within the timeout
        with no further bytes; bytes that arrive first make it False (see self.buf)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.eof:
            try:
                self._recv(deadline)
            except socket.timeout:
                return False
        return self.buf == b""

    def replies_until_close(self, timeout=None):
        """Reads every reply until the server closes the connection; returns them all."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        got = []
        while True:
            r = self._take_reply()
            if r is not None:
                got.append(r)
                continue
            if self.eof:
                assert self.buf == b"", "bytes after the last reply: %r" % self.buf
                return got
            try:
                self._recv(deadline)
            except socket.timeout:
                raise AssertionError("no close; replies so far %r, left %r"
                                     % (got, self.buf)) from None

    def assert_closed(self, timeout=None):
        """Asserts that the server closes the connection with nothing more said."""
        if not self.closed(timeout):
            raise AssertionError("expected a close with nothing more; got %r%s"
                                 % (self.buf, "" if self.eof else " and no close"))

    def quiet(self, wait=0.3):
        """True when nothing more arrives within `wait` seconds (no stray replies)."""
        try:
            self._recv(time.monotonic() + wait)
        except socket.timeout:
            return self.buf == b""
        return False


def ehlo(w, name="client.test"):
    r = w.cmd("EHLO " + name)
    assert r.code == 250, r
    return r


def assert_serves(port, host="127.0.0.1", source=None):
    """A fresh client gets a full session: greeting, EHLO, NOOP, QUIT with a close."""
    with Wire(port, host=host, source=source) as w:
        assert w.greeting.code == 220, w.greeting
        ehlo(w, "fresh.test")
        assert w.cmd("NOOP").code == 250
        assert w.cmd("QUIT").code == 221
        w.assert_closed()


def send_mail(port, sender, rcpts, body, host="127.0.0.1", source=None):
    """One DATA transaction with raw body bytes (terminator added); returns the final reply."""
    with Wire(port, host=host, source=source) as w:
        ehlo(w)
        assert w.cmd("MAIL FROM:<%s>" % sender).code == 250
        for r in rcpts:
            assert w.cmd("RCPT TO:<%s>" % r).code == 250
        assert w.cmd("DATA").code == 354
        w.send(body + b".\r\n")
        final = w.reply()
        w.cmd("QUIT")
        return final


def unstuff(data):
    """What RFC 5321 4.5.2 says a server stores for DATA input `data` (terminator included):
    only CRLF ends a line; a line starting with '.' loses that '.'; the line "." ends it."""
    out = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        assert end >= 0, "no terminator in %r" % data
        line = data[pos:end]
        pos = end + 2
        if line == b".":
            return b"".join(out)
        if line.startswith(b"."):
            line = line[1:]
        out.append(line + b"\r\n")


def body_after_received(message):
    """The stored message without the Received: header ringmx puts first."""
    assert message.startswith(b"Received: from "), message[:200]
    # The header is folded: continuation lines start with a TAB.
    pos = 0
    while True:
        end = message.index(b"\r\n", pos)
        pos = end + 2
        if message[pos:pos + 1] not in (b"\t", b" "):
            return message[pos:]
