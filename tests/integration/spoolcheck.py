"""Helpers for the spool durability tests (test_crash.py, test_spool.py).

- Wire: a minimal raw SMTP client (pipelining, BDAT) that reads replies exactly, so a test
  knows which messages got their final 250 and with which queue id.
- Corpus: seeded message bodies: dot lines, long lines, 8-bit bytes (DATA), anything (BDAT).
- Sent: what was sent and what the server answered; check_record() compares it with a
  record decoded by `ringmx-spool export`.
- logfmt parsing of the server log.
"""
import random
import re
import socket

QUEUED_RE = re.compile(rb"^250[ -]2\.0\.0 Ok: queued as ([0-9a-f]{16})\s*$")
LOGFMT_RE = re.compile(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)')


# ---- log --------------------------------------------------------------------------------

def logfmt(line):
    out = {}
    for k, v in LOGFMT_RE.findall(line):
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[k] = v
    return out


def log_events(text, event):
    """Every log line of that event, parsed, in order."""
    return [logfmt(l) for l in text.splitlines() if (" event=%s " % event) in l + " "]


# ---- a raw SMTP client -------------------------------------------------------------------

class Wire:
    """One SMTP connection over a plain socket; replies are read one whole reply at a time."""

    def __init__(self, host, port, timeout=10.0, ehlo="crash.client"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        code, text = self.reply()
        if code != 220:
            raise ConnectionError("greeting: %r" % text)
        self.send(b"EHLO %s\r\n" % ehlo.encode())
        code, text = self.reply()
        if code != 250:
            raise ConnectionError("EHLO: %r" % text)
        self.ehlo_text = text

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("connection closed by the server")
            self.buf += d

    def reply(self):
        """(code, last line) of the next whole reply."""
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit():
                raise ConnectionError("not an SMTP reply: %r" % line)
            if line[3:4] != b"-":
                return int(line[:3]), line

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def queued_qid(line):
    """The queue id of a final '250 2.0.0 Ok: queued as X' reply line, else None."""
    m = QUEUED_RE.match(line)
    return m.group(1).decode() if m else None


def dot_stuff(body):
    """RFC 5321 4.5.2 transparency for a CRLF-only body (no bare CR/LF in it)."""
    assert body.endswith(b"\r\n")
    out = body.replace(b"\n.", b"\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"


# ---- what was sent ---------------------------------------------------------------------

class Sent:
    """One message: the envelope, the bytes the spool must hold after our Received: header,
    and the outcome (acked: a final 250 was read; qid: from that reply)."""

    __slots__ = ("uid", "kind", "sender", "rcpts", "body", "binary", "acked", "qid", "reply")

    def __init__(self, uid, kind, sender, rcpts, body, binary):
        self.uid, self.kind, self.sender, self.rcpts = uid, kind, sender, rcpts
        self.body, self.binary = body, binary
        self.acked, self.qid, self.reply = False, None, None

    def outcome(self, line):
        self.reply = line
        qid = queued_qid(line)
        if qid is not None:
            self.qid = qid
            self.acked = True

    def __repr__(self):
        return "<Sent %s %s %d bytes acked=%s qid=%s reply=%r>" % (
            self.uid, self.kind, len(self.body), self.acked, self.qid, self.reply)


UID_RE = re.compile(rb"\r\nX-Uid: (u[0-9a-z-]+)\r\n")


def record_uid(rec):
    m = UID_RE.search(rec["message"][:4096])
    return m.group(1).decode() if m else None


def split_received(message):
    """Splits a stored message into (our Received: header, the rest). The header is the first
    one and goes on over continuation lines (those starting with a space or a tab)."""
    if not message.startswith(b"Received: "):
        return None, message
    pos = 0
    while True:
        end = message.find(b"\r\n", pos)
        if end < 0:
            return None, message
        pos = end + 2
        if message[pos:pos + 1] not in (b" ", b"\t"):
            return message[:pos], message[pos:]


def record_problems(rec, msg):
    """What is wrong with rec as the stored form of msg (an empty list: nothing)."""
    errs = []
    if msg.qid is not None and rec["qid"] != msg.qid:
        errs.append("qid %s, the 250 said %s" % (rec["qid"], msg.qid))
    if rec["from"] != msg.sender:
        errs.append("from %r, sent %r" % (rec["from"], msg.sender))
    if rec["rcpts"] != msg.rcpts:
        errs.append("rcpts %r, sent %r" % (rec["rcpts"], msg.rcpts))
    m = rec["message"]
    if rec["size"] != len(m):
        errs.append("size field %d, message is %d bytes" % (rec["size"], len(m)))
    hdr, rest = split_received(m)
    if hdr is None:
        errs.append("no Received: header first: %r" % m[:80])
    else:
        if (b" id %s" % rec["qid"].encode()) not in hdr:
            errs.append("Received: header does not name qid %s: %r" % (rec["qid"], hdr))
        if rest != msg.body:
            errs.append("message bytes differ: stored %d bytes after Received:, sent %d; "
                        "first difference at %d" % (len(rest), len(msg.body),
                                                    first_diff(rest, msg.body)))
    binary = bool(rec["flags"] & 4)
    if binary != msg.binary:
        errs.append("flags %d: binary flag %s for a %s message" % (rec["flags"], binary,
                                                                    msg.kind))
    return errs


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


# ---- message bodies ---------------------------------------------------------------------

_PRINTABLE = bytes(range(0x20, 0x7f))
_NO_EOL = bytes.maketrans(b"\r\n\x00", b"#%&")


class Corpus:
    """Seeded random message bodies. DATA bodies are CRLF-only text with dot-led lines, long
    lines and 8-bit bytes (never a bare CR/LF or NUL); BDAT bodies may hold any byte."""

    def __init__(self, rng, pool_size=1 << 19, pools=None):
        self.rng = rng
        if pools is None:
            raw = rng.randbytes(pool_size)
            text = bytes(_PRINTABLE[b % len(_PRINTABLE)] for b in raw[: pool_size // 4]) * 4
            pools = (text, raw.translate(_NO_EOL), raw)
        self.pools = pools
        self.text, self.eight, self.raw = pools

    def with_rng(self, rng):
        """The same byte pools, another random stream (one per client thread)."""
        return Corpus(rng, pools=self.pools)

    def _slice(self, pool, n):
        i = self.rng.randrange(0, len(pool) - n) if n < len(pool) else 0
        return pool[i:i + n]

    def size(self, lo=100, hi=200 * 1024):
        """Log-uniform: most messages small, some near the top."""
        r = self.rng.random()
        return int(lo * (hi / lo) ** r)

    def headers(self, uid, extra=b""):
        return (b"Message-Id: <%s@crash.test>\r\nX-Uid: %s\r\nSubject: test %s\r\n%s\r\n"
                % (uid.encode(), uid.encode(), uid.encode(), extra))

    def data_body(self, uid, size):
        rng = self.rng
        if rng.random() < 0.05:
            first = b".a first line that starts with a dot"
        else:
            first = b"From: a@example.test"
        parts = [first + b"\r\n", self.headers(uid)]
        total = sum(len(p) for p in parts)
        while total < size:
            r = rng.random()
            if r < 0.10:
                line = b"." + self._slice(self.text, rng.randrange(0, 80))
            elif r < 0.16:
                line = rng.choice([b".", b"..", b"...", b". ", b".\t."])
            elif r < 0.20:
                line = self._slice(self.text, rng.randrange(999, 9000))  # over 998
            elif r < 0.40:
                line = self._slice(self.eight, rng.randrange(1, 200))
            elif r < 0.43:
                line = b""
            else:
                line = self._slice(self.text, rng.randrange(0, 120))
            parts.append(line + b"\r\n")
            total += len(line) + 2
        parts.append(b"end of %s\r\n" % uid.encode())
        return b"".join(parts)

    def bdat_body(self, uid, size):
        rng = self.rng
        parts = [self.headers(uid, b"X-Binary: yes\r\n")]
        total = len(parts[0])
        while total < size:
            r = rng.random()
            if r < 0.3:
                piece = self._slice(self.raw, rng.randrange(1, 4000))  # any byte at all
            elif r < 0.4:
                piece = rng.choice([b"\r\n.\r\n", b"\n.\n", b"\r.\r", b".", b"\x00",
                                    b"\r\n..\r\n", b"\r\nQUIT\r\n"])
            else:
                piece = self._slice(self.text, rng.randrange(0, 120)) + b"\r\n"
            parts.append(piece)
            total += len(piece)
        # Sometimes without a final CRLF: BDAT carries the bytes exactly.
        if rng.random() < 0.5:
            parts.append(b"end of %s\r\n" % uid.encode())
        else:
            parts.append(b"end of %s" % uid.encode())
        return b"".join(parts)


def chunks(rng, body, n_max=4):
    """Splits body into 1..n_max BDAT chunks (one may be empty at the end: BDAT 0 LAST)."""
    n = rng.randint(1, n_max)
    cuts = sorted(set(rng.randrange(1, len(body)) for _ in range(n - 1))) if len(body) > 1 else []
    out, prev = [], 0
    for c in cuts + [len(body)]:
        out.append(body[prev:c])
        prev = c
    if rng.random() < 0.1:
        out.append(b"")
    return out


def bdat_wire(parts):
    """The bytes of a pipelined BDAT sequence, the last chunk marked LAST."""
    out = []
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        out.append(b"BDAT %d%s\r\n" % (len(p), b" LAST" if last else b""))
        out.append(p)
    return b"".join(out)


def new_rng(seed):
    return random.Random(seed)
