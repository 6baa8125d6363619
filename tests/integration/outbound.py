"""Helpers for the outbound delivery tests (test_outbound.py, test_local_delivery.py).

    ns = start_nsd(tmp_dir)                      # nsd on a loopback port serving outbound.zone
    addr = zone_address("mx.retry.out.test")     # the 127.0.0.X the zone gives that MX host
    rcv = Receiver(addr).start()                 # an SMTP server on addr:25 in a thread
    rcv.fail("RCPT", "550 5.1.1 no such user", match="bad@")
    qid = send(srv, "sender@localhost", ["a@retry.out.test"], make_message(subject="x"))
    wait_until(lambda: len(rcv.messages) == 1, 5)
    events(srv, "delivered")                     # the log's event=delivered lines, as dicts

Receiver is a small SMTP/LMTP server written for these tests, so that a test can see what a
real server cannot show: every session with its commands, how many sessions were open at once,
which commands came pipelined, whether the message came by DATA or BDAT; and it can answer any
command with any reply. It is strict where RFC 5321/2920/3030 say MUST (CRLF line ends, no
pipelining unless offered, nothing after DATA before the 354, BDAT only when offered) and records
each breach in .violations, which the receiver fixture checks after every test.
AioReceiver is aiosmtpd (a real, independent implementation) for the tests that want one.

Every wait has a timeout; nothing here sleeps longer than it is told.
"""
import asyncio
import email
import email.policy
import os
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ZONE = os.path.join(HERE, "dns", "outbound.zone")
ZONE_ORIGIN = "out.test."

# ---- waiting ----------------------------------------------------------------------------------


def wait_until(cond, timeout=5.0, what=None, interval=0.02):
    """Calls cond() until it returns something true; returns that. Raises AssertionError with
    `what` (a string or a callable giving one, for the state at the time) after `timeout` s."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            text = what() if callable(what) else (what or getattr(cond, "__name__", "condition"))
            raise AssertionError("not within %.1f s: %s" % (timeout, text))
        time.sleep(interval)


# ---- the log ----------------------------------------------------------------------------------

_KV = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _unquote(v):
    if not v.startswith('"'):
        return v
    v = v[1:-1]
    return re.sub(r'\\x([0-9a-fA-F]{2})|\\(.)',
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), v)


def logfmt(line):
    """One logfmt line as a dict (quoted values unescaped)."""
    return {k: _unquote(v) for k, v in _KV.findall(line)}


def events(srv, event, **match):
    """The log lines of `srv` with event=EVENT, as dicts, in log order; with match (k=v), only
    those whose fields have these values."""
    out = []
    for line in srv.log_events(event):
        d = logfmt(line)
        if all(d.get(k) == str(v) for k, v in match.items()):
            out.append(d)
    return out


def wait_events(srv, event, count=1, timeout=5.0, **match):
    """Waits for at least `count` event=EVENT lines (with the given fields); returns them."""
    return wait_until(lambda: (lambda e: e if len(e) >= count else None)(
        events(srv, event, **match)), timeout,
        lambda: "%d x event=%s %r; log tail:\n%s" % (count, event, match, srv.log()[-4000:]))


# ---- addresses and DNS -------------------------------------------------------------------------


def zone_address(name, zone=ZONE):
    """The A record of NAME in outbound.zone (a relative or absolute name): the address the
    test binds its receiver to. Raises KeyError when the zone has none."""
    fq = name.rstrip(".") + "."
    origin = ZONE_ORIGIN
    with open(zone) as f:
        for line in f:
            line = line.split(";", 1)[0].rstrip()
            if not line or line[0].isspace():
                continue
            if line.startswith("$ORIGIN"):
                origin = line.split()[1]
                continue
            parts = line.split()
            owner = parts[0] if parts[0].endswith(".") else parts[0] + "." + origin
            if owner.lower() == fq.lower() and "A" in parts[1:-1]:
                return parts[-1]
    raise KeyError(name)


_next_loopback = [100]
_lock = threading.Lock()


def loopback_address(port=25):
    """A 127.0.0.X (X from 100 up) that no earlier call in this run gave out and where `port`
    is free now: for a receiver that no MX names (a [transport] hop). The zone keeps below 100."""
    with _lock:
        while _next_loopback[0] < 255:
            addr = "127.0.0.%d" % _next_loopback[0]
            _next_loopback[0] += 1
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, port))
                except OSError:
                    continue
            return addr
    raise RuntimeError("no free 127.0.0.X address left")


class Nsd:
    """nsd on a free loopback port serving `zones` ({origin: zone file}); the PEERS.md recipe."""

    def __init__(self, directory, zones=None, port=None):
        from conftest import free_port
        zones = zones or {ZONE_ORIGIN: ZONE}
        self.dir = str(directory)
        self.port = port or free_port()
        zone_lines = []
        for origin, path in zones.items():
            base = os.path.basename(path)
            shutil.copy(path, os.path.join(self.dir, base))
            zone_lines.append('zone:\n  name: "%s"\n  zonefile: "%s"\n' % (origin, base))
        d = self.dir
        self.conf = os.path.join(d, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write(f"""server:
  ip-address: 127.0.0.1
  port: {self.port}
  username: ""
  chroot: ""
  zonesdir: "{d}"
  pidfile: "{d}/nsd.pid"
  database: ""
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  logfile: "{d}/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
""" + "".join(zone_lines))
        self.proc = None
        self.first_zone = next(iter(zones))

    def start(self, timeout=15.0):
        self.proc = subprocess.Popen(["nsd", "-d", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: "NOERROR" in self.drill("SOA", self.first_zone), timeout,
                       lambda: "nsd answers on %d; nsd.log:\n%s" % (self.port, self.nsd_log()))
        except AssertionError:
            self.stop()
            raise
        return self

    def nsd_log(self):
        p = os.path.join(self.dir, "nsd.log")
        return open(p).read() if os.path.exists(p) else "(no log)"

    def drill(self, qtype, name):
        """drill's output for one query (ldnsutils), or "" when it timed out."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("nsd exited with %s:\n%s" % (self.proc.returncode,
                                                              self.nsd_log()))
        try:
            return subprocess.run(["drill", "-p", str(self.port), qtype, name, "@127.0.0.1"],
                                  capture_output=True, text=True, timeout=3).stdout
        except subprocess.TimeoutExpired:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- ringmx configuration ---------------------------------------------------------------------


def outbound_sections(nsd_port=None, deliver=None, queue=None, dns=None, **sections):
    """ringmx_factory keyword arguments for a delivering server: loopback MX allowed, short
    timeouts, a 1 s retry, [dns] at nsd. Each argument's keys override these defaults."""
    d = {"enabled": "yes", "loopback_mx": "yes", "helo_name": "ringmx.out.test",
         "connect_timeout": "3", "smtp_timeout": "10", "idle_timeout": "1"}
    d.update(deliver or {})
    q = {"retry": "1s"}
    q.update(queue or {})
    out = dict(sections, deliver=d, queue=q)
    if nsd_port is not None or dns:
        r = {"resolvers": "127.0.0.1:%d" % nsd_port} if nsd_port is not None else {}
        r.update({"timeout": "500"})
        r.update(dns or {})
        out["dns"] = r
    return out


# ---- sending into ringmx -----------------------------------------------------------------------

_QUEUED = re.compile(rb"queued as ([0-9a-fA-F]{16})")
_msg_counter = [0]


def make_message(subject="test", body="Hello.\r\n", headers=None, message_id=None,
                 sender="sender@localhost", to="rcpt@localhost"):
    """A small RFC 5322 message as bytes with CRLF line ends and a unique Message-ID."""
    _msg_counter[0] += 1
    message_id = message_id or "<t%d.%d.%d@out.test>" % (os.getpid(), _msg_counter[0],
                                                         int(time.time() * 1e6))
    h = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: %s" % subject,
         "Message-ID: %s" % message_id, "Date: Thu, 01 Jan 2026 00:00:00 +0000"]
    h += list(headers or [])
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def message_id(data):
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>\r\n]*>)", data)
    return m.group(1).decode() if m else None


def smtp_session(srv, timeout=10):
    s = smtplib.SMTP(srv.host, srv.port, timeout=timeout)
    s.ehlo("client.test")
    return s


def send(srv, sender, rcpts, data, session=None):
    """Sends one message to ringmx by smtplib (which dot-stuffs); returns its qid. With
    session (an smtplib.SMTP from smtp_session), reuses it."""
    s = session or smtp_session(srv)
    try:
        s.mail(sender)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, "RCPT %s: %d %r" % (r, code, text)
        code, text = s.data(data)
        assert code == 250, "DATA: %d %r" % (code, text)
        m = _QUEUED.search(text)
        assert m, text
        return m.group(1).decode().lower()
    finally:
        if session is None:
            s.quit()


def send_many(srv, n, sender, rcpt_fn, subject="bulk %d", body="Message %d.\r\n"):
    """Sends n messages on one connection; rcpt_fn(i) gives the recipient list of message i.
    Returns [(qid, message-id)]."""
    out = []
    s = smtp_session(srv)
    try:
        for i in range(n):
            data = make_message(subject=subject % i, body=body % i, sender=sender)
            out.append((send(srv, sender, rcpt_fn(i), data, session=s), message_id(data)))
    finally:
        s.quit()
    return out


def strip_received(data):
    """A message without its leading Received: header fields (the one ringmx adds at accept
    time, with its continuation lines), so it can be compared with what was sent."""
    lines = data.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].lower().startswith(b"received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\n".join(lines[i:])


def received_qid(data):
    """The qid in ringmx's Received: header ("... (ringmx) with ESMTP id QID"), or None."""
    m = re.search(rb"\(ringmx\) with \S+ id ([0-9a-fA-F]{16})", data)
    return m.group(1).decode().lower() if m else None


# ---- Maildir ----------------------------------------------------------------------------------


def maildir_new(root, localpart):
    """The files in ROOT/LOCALPART/new as [(name, bytes)], oldest first."""
    d = os.path.join(str(root), localpart, "new")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    paths = sorted((os.path.join(d, n) for n in names), key=lambda p: (os.stat(p).st_mtime_ns, p))
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append((os.path.basename(p), f.read()))
    return out


def wait_maildir(root, localpart, count=1, timeout=5.0):
    """Waits for at least `count` messages in ROOT/LOCALPART/new; returns their bytes."""
    got = wait_until(lambda: (lambda m: m if len(m) >= count else None)(
        maildir_new(root, localpart)), timeout,
        lambda: "%d message(s) in %s/%s/new (have %d)" % (
            count, root, localpart, len(maildir_new(root, localpart))))
    return [data for _, data in got]


def all_maildir_files(root):
    out = []
    for dirpath, _, files in os.walk(str(root)):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def crlf_to_lf(data):
    return data.replace(b"\r\n", b"\n")


def parse_dsn(data):
    """A DSN as (the message, [per-message fields, per-recipient fields...] as dicts, the
    text/rfc822-headers or message/rfc822 part's bytes or b"", the whole text). Asserts the
    multipart/report shape (RFC 3462/3464)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg.get("Content-Type")
    parts = msg.get_payload()
    assert parts[0].get_content_maintype() == "text", parts[0].get_content_type()
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status", status.get_content_type()
    groups = [dict((k.lower(), v.strip()) for k, v in g.items()) for g in status.get_payload()]
    original = b""
    if len(parts) > 2:
        p = parts[2]
        if p.get_content_type() == "text/rfc822-headers":
            original = p.get_payload(decode=True) or p.get_payload().encode()
        elif p.get_content_type() == "message/rfc822":
            original = p.get_payload()[0].as_bytes()
    return msg, groups, original


# ---- a scriptable SMTP/LMTP receiver ------------------------------------------------------------


class Rule:
    def __init__(self, verb, reply, match=None, times=None, close=False):
        self.verb, self.reply, self.match, self.times, self.close = (
            verb.upper(), reply, match, times, close)
        self.used = 0

    def applies(self, verb, arg):
        if verb != self.verb or (self.times is not None and self.used >= self.times):
            return False
        if self.match is None:
            return True
        if callable(self.match):
            return self.match(arg)
        return self.match.lower() in arg.lower()


class Session:
    def __init__(self, sid, peer):
        self.id = sid
        self.peer = peer
        self.t_open = time.monotonic()
        self.t_close = None
        self.helo = None
        self.commands = []      # [(verb, arg, pipelined)]: pipelined = more input was waiting
        self.messages = []      # the Message objects accepted in this session
        self.quit = False       # the client sent QUIT (else it just closed, or we did)


class Message:
    def __init__(self, session, mail_from, mail_params, rcpts, data, via):
        self.session = session   # Session.id
        self.mail_from = mail_from
        self.mail_params = mail_params
        self.rcpts = rcpts       # the accepted recipients of the transaction
        self.data = data         # bytes as sent, un-stuffed, CRLF
        self.via = via           # "DATA" or "BDAT"
        self.t = time.monotonic()

    @property
    def domains(self):
        return {r.rsplit("@", 1)[-1].lower() for r in self.rcpts}

    def __repr__(self):
        return "Message(from=%r rcpts=%r %d bytes via %s)" % (self.mail_from, self.rcpts,
                                                               len(self.data), self.via)


_ADDR = re.compile(r"^\s*(?:FROM|TO):\s*<([^>]*)>\s*(.*)$", re.I)


class Receiver:
    """An SMTP (or LMTP) server on host:port run by asyncio in a thread of its own.

    Options: pipelining / chunking (announce PIPELINING / CHUNKING), lmtp (LHLO, one reply per
    recipient after the data), eod_delay_s (wait before answering the end of the data).
    Replies: fail(VERB, reply, match=, times=, close=) answers VERB with `reply` instead of the
    usual one (VERB: CONNECT for the greeting, EHLO, MAIL, RCPT, DATA for the DATA command itself,
    EOD for the reply after the content; for EOD `match` sees the content in SMTP and each
    recipient in LMTP). `close` drops the connection after the reply.
    Records: .sessions, .messages (accepted), .rejected [(verb, arg, reply)], .max_concurrent,
    .violations."""

    def __init__(self, host, port=25, pipelining=True, chunking=False, lmtp=False,
                 hostname="rcv.out.test", eod_delay_s=0.0, size=50 * 1024 * 1024):
        self.host, self.port = host, port
        self.pipelining, self.chunking, self.lmtp = pipelining, chunking, lmtp
        self.hostname, self.eod_delay_s, self.size = hostname, eod_delay_s, size
        self.rules = []
        self.sessions = []
        self.messages = []
        self.rejected = []
        self.violations = []
        self.active = 0
        self.max_concurrent = 0
        self._loop = None
        self._thread = None
        self._server = None
        self._writers = set()

    # -- control (from the test's thread)

    def fail(self, verb, reply, match=None, times=None, close=False):
        self.rules.append(Rule(verb, reply, match, times, close))
        return self

    def start(self):
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._session, self.host, self.port, reuse_address=True, limit=1 << 20,
                    backlog=256))
            except Exception as e:  # bind failed: tell start()
                err.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name="receiver %s:%d" % (self.host, self.port))
        self._thread.start()
        ready.wait(10)
        if err:
            raise RuntimeError("receiver cannot listen on %s:%d: %s" % (self.host, self.port,
                                                                        err[0]))
        return self

    def stop(self):
        """Closes the listener and every open connection; keeps what was recorded."""
        if self._thread is None:
            return

        async def shutdown():
            self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # -- views

    @property
    def connections(self):
        """Sessions that got as far as EHLO/HELO/LHLO (not bare TCP probes)."""
        return [s for s in self.sessions if s.helo is not None]

    def message_ids(self):
        return [message_id(m.data) for m in self.messages]

    def rcpts(self):
        return [r for m in self.messages for r in m.rcpts]

    def wait_messages(self, count, timeout=5.0):
        wait_until(lambda: len(self.messages) >= count, timeout,
                   lambda: "%d messages at %s (have %d; rejected %d; sessions %d)" % (
                       count, self.host, len(self.messages), len(self.rejected),
                       len(self.sessions)))
        return self.messages

    def wait_rcpts(self, count, timeout=5.0):
        wait_until(lambda: len(self.rcpts()) >= count, timeout,
                   lambda: "%d recipients at %s (have %d)" % (count, self.host,
                                                              len(self.rcpts())))
        return self.rcpts()

    # -- the server (in the receiver's thread)

    def _rule(self, verb, arg):
        for r in self.rules:
            if r.applies(verb, arg):
                r.used += 1
                return r
        return None

    def _violation(self, s, text):
        self.violations.append("session %d: %s" % (s.id, text))

    async def _session(self, reader, writer):
        s = Session(len(self.sessions) + 1, writer.get_extra_info("peername"))
        self.sessions.append(s)
        self._writers.add(writer)
        self.active += 1
        self.max_concurrent = max(self.max_concurrent, self.active)
        try:
            await self._serve(s, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):  # ValueError: a line over the 1 MiB limit
            pass
        finally:
            self.active -= 1
            s.t_close = time.monotonic()
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    def _reply(self, writer, text):
        writer.write(text.encode() + b"\r\n")

    async def _serve(self, s, reader, writer):
        r = self._rule("CONNECT", str(s.peer))
        if r:
            self._reply(writer, r.reply)
            await writer.drain()
            return
        self._reply(writer, "220 %s ESMTP test receiver" % self.hostname)
        tx = None  # (mail_from, params, [rcpts]) of the open transaction
        chunks = []  # BDAT data so far
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                return  # end of input (a partial line: the client went away mid-command)
            pending = len(getattr(reader, "_buffer", b"")) > 0
            if not line.endswith(b"\r\n"):
                self._violation(s, "command line without CRLF: %r" % line[:80])
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            s.commands.append((verb, arg, pending))
            if pending and verb not in ("BDAT",):
                if not self.pipelining:
                    self._violation(s, "%s pipelined without PIPELINING offered" % verb)
                elif verb in ("EHLO", "LHLO", "HELO", "DATA", "QUIT", "STARTTLS"):
                    self._violation(s, "%s not last in a pipelined group" % verb)
            if self.lmtp and verb in ("EHLO", "HELO"):
                self._violation(s, "%s to an LMTP server (RFC 2033 4.1: LHLO)" % verb)
                self._reply(writer, "500 5.5.1 this is LMTP: LHLO")
                continue
            hello = "LHLO" if self.lmtp else "EHLO"
            if verb in (hello, "HELO"):
                r = self._rule(verb, arg)
                if r:
                    self._reply(writer, r.reply)
                    if r.close:
                        return
                    continue
                s.helo = arg
                tx = None
                if verb == "HELO":
                    self._reply(writer, "250 %s" % self.hostname)
                    continue
                ext = ["8BITMIME", "ENHANCEDSTATUSCODES", "SIZE %d" % self.size]
                if self.pipelining:
                    ext.append("PIPELINING")
                if self.chunking:
                    ext.append("CHUNKING")
                lines = [self.hostname] + ext
                self._reply(writer, "\r\n".join(
                    "250%s%s" % ("-" if i < len(lines) - 1 else " ", t)
                    for i, t in enumerate(lines)))
            elif verb == "QUIT":
                s.quit = True
                self._reply(writer, "221 2.0.0 bye")
                await writer.drain()
                return
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    tx, chunks = None, []
                self._reply(writer, "250 2.0.0 ok")
            elif s.helo is None:
                self._violation(s, "%s before EHLO/HELO" % verb)
                self._reply(writer, "503 5.5.1 say hello first")
            elif verb == "MAIL":
                m = _ADDR.match(arg)
                if not m or not arg.upper().startswith("FROM:"):
                    self._reply(writer, "501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                if tx is not None:
                    self._violation(s, "MAIL inside a transaction")
                r = self._rule("MAIL", arg)
                if r:
                    self.rejected.append(("MAIL", arg, r.reply))
                    self._reply(writer, r.reply)
                    if r.close:
                        return
                    continue
                tx = (m.group(1), m.group(2), [])
                chunks = []
                self._reply(writer, "250 2.1.0 ok")
            elif verb == "RCPT":
                m = _ADDR.match(arg)
                if tx is None:
                    self._violation(s, "RCPT without MAIL")
                    self._reply(writer, "503 5.5.1 need MAIL first")
                    continue
                if not m or not arg.upper().startswith("TO:"):
                    self._reply(writer, "501 5.5.4 syntax: RCPT TO:<address>")
                    continue
                r = self._rule("RCPT", arg)
                if r:
                    self.rejected.append(("RCPT", m.group(1), r.reply))
                    self._reply(writer, r.reply)
                    if r.close:
                        return
                    continue
                tx[2].append(m.group(1))
                self._reply(writer, "250 2.1.5 ok")
            elif verb == "DATA":
                if tx is None or not tx[2]:
                    self._reply(writer, "554 5.5.1 no valid recipients" if tx is not None
                                else "503 5.5.1 need MAIL first")
                    continue
                r = self._rule("DATA", arg)
                if r:
                    self.rejected.append(("DATA", "", r.reply))
                    self._reply(writer, r.reply)
                    tx = None
                    if r.close:
                        return
                    continue
                self._reply(writer, "354 go ahead")
                await writer.drain()
                data = await self._read_data(s, reader)
                if not await self._end_of_data(s, writer, tx, data, "DATA"):
                    return
                tx = None
            elif verb == "BDAT":
                parts = arg.split()
                if not self.chunking:
                    self._violation(s, "BDAT without CHUNKING offered")
                try:
                    n = int(parts[0])
                except (IndexError, ValueError):
                    self._reply(writer, "501 5.5.4 syntax: BDAT size [LAST]")
                    return
                last = len(parts) > 1 and parts[1].upper() == "LAST"
                chunk = await reader.readexactly(n)
                if tx is None or not tx[2]:
                    self._reply(writer, "554 5.5.1 no valid recipients" if tx is not None
                                else "503 5.5.1 need MAIL first")
                    tx, chunks = None, []
                    continue
                chunks.append(chunk)
                if not last:
                    self._reply(writer, "250 2.0.0 %d octets received" % n)
                    continue
                data = b"".join(chunks)
                chunks = []
                if not await self._end_of_data(s, writer, tx, data, "BDAT"):
                    return
                tx = None
            else:
                self._reply(writer, "502 5.5.2 command not implemented")
            await writer.drain()

    async def _read_data(self, s, reader):
        out = []
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionError("EOF in DATA")
            if line == b".\r\n":
                return b"".join(out)
            if not line.endswith(b"\r\n"):
                self._violation(s, "bare LF in DATA: %r" % line[-80:])
            elif b"\r" in line[:-2]:
                self._violation(s, "bare CR in DATA: %r" % line[:80])
            if len(line) > 1000:
                self._violation(s, "DATA line of %d octets (RFC 5321 4.5.3.1.6)" % len(line))
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    async def _end_of_data(self, s, writer, tx, data, via):
        """Answers the end of a message; returns False when the connection is to be closed."""
        if self.eod_delay_s:
            await asyncio.sleep(self.eod_delay_s)
        mail_from, params, rcpts = tx
        if self.lmtp:
            accepted = []
            for rcpt in rcpts:
                r = self._rule("EOD", rcpt)
                if r:
                    self.rejected.append(("EOD", rcpt, r.reply))
                    self._reply(writer, r.reply)
                else:
                    accepted.append(rcpt)
                    self._reply(writer, "250 2.0.0 <%s> ok" % rcpt)
            if accepted:
                self._accept(s, mail_from, params, accepted, data, via)
            return True
        r = self._rule("EOD", data.decode("latin-1"))
        if r:
            self.rejected.append(("EOD", ",".join(rcpts), r.reply))
            self._reply(writer, r.reply)
            return not r.close
        self._accept(s, mail_from, params, list(rcpts), data, via)
        self._reply(writer, "250 2.0.0 ok: queued as R%d" % len(self.messages))
        return True

    def _accept(self, s, mail_from, params, rcpts, data, via):
        m = Message(s.id, mail_from, params, rcpts, data, via)
        s.messages.append(m)
        self.messages.append(m)


class AioReceiver:
    """aiosmtpd on host:port (or a unix socket), SMTP or LMTP: a real, independent server.
    Records .messages (Message objects, via "DATA") and .sessions (count of HELO/EHLO/LHLO)."""

    def __init__(self, host=None, port=25, lmtp=False, unix_socket=None):
        from aiosmtpd.controller import Controller, UnixSocketController
        from aiosmtpd.lmtp import LMTP
        from aiosmtpd.smtp import SMTP
        self.messages = []
        self.hellos = 0
        rcv = self
        cls = LMTP if lmtp else SMTP

        class Counting(cls):
            async def smtp_HELO(self, arg):
                rcv.hellos += 1
                await super().smtp_HELO(arg)

            async def smtp_EHLO(self, arg):
                rcv.hellos += 1
                await super().smtp_EHLO(arg)

        if lmtp:
            async def smtp_LHLO(self, arg):
                rcv.hellos += 1
                await LMTP.smtp_LHLO(self, arg)
            Counting.smtp_LHLO = smtp_LHLO

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                rcv.messages.append(Message(rcv.hellos, envelope.mail_from,
                                            " ".join(envelope.mail_options),
                                            list(envelope.rcpt_tos),
                                            envelope.original_content, "DATA"))
                if lmtp:  # one reply per recipient (RFC 2033 4.2); aiosmtpd sends one line
                    return "\r\n".join("250 2.0.0 <%s> ok" % r for r in envelope.rcpt_tos)
                return "250 2.0.0 ok"

        base = UnixSocketController if unix_socket else Controller

        class Ctl(base):
            def factory(self):
                return Counting(self.handler, **self.SMTP_kwargs)

        if unix_socket:
            self.ctl = Ctl(Handler(), unix_socket=unix_socket)
        else:
            self.ctl = Ctl(Handler(), hostname=host, port=port)
        self.host, self.port, self.unix_socket = host, port, unix_socket

    def start(self):
        self.ctl.start()
        self.running = True
        return self

    def stop(self):
        if getattr(self, "running", False):
            self.ctl.stop()
            self.running = False

    def wait_messages(self, count, timeout=5.0):
        wait_until(lambda: len(self.messages) >= count, timeout,
                   lambda: "%d messages at aiosmtpd (have %d)" % (count, len(self.messages)))
        return self.messages
