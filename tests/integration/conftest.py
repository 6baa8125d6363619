"""Shared fixtures: start the real ringmx binary on a free loopback port with a temp config.

Use:   def test_x(ringmx): ringmx.port, ringmx.spool, ringmx.log()
Or:    def test_y(ringmx_factory): srv = ringmx_factory(server={"max_recipients": 5})
Sections: server=, spool=, accept=, deliver=, queue=, transport=, dns= (dicts of key: value),
and extra={"domain gmail.test": {...}} for sections whose names are not Python names.
Without deliver= the server delivers nothing ([deliver] enabled = no, the inbound tests);
with it, enabled defaults to yes. maildir_root is always under the test's tmp dir (srv.maildir).
Binaries come from $RINGMX_BIN (default: ./bin), so `make check-asan` runs the same tests
against the sanitizer build.

Outbound delivery: outbound_nsd (nsd serving dns/outbound.zone) and receivers (SMTP servers on
127.0.0.X:25) are below; the helpers are in outbound.py.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("RINGMX_BIN", os.path.join(ROOT, "bin")))


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited early with %s" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.2) as s:
                try:
                    s.recv(1024)  # the greeting
                except socket.timeout:
                    pass  # none yet (greeting_delay_ms): connected is enough
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %s:%d" % (host, port))


_knows_deliver = []


def binary_knows_deliver():
    """Whether this ringmx reads a [deliver] section (ringmx --check): before outbound delivery
    it rejects the section as unknown, and the inbound tests must run against both."""
    if not _knows_deliver:
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "probe.conf")
            with open(conf, "w") as f:
                f.write("[server]\nlisten = 127.0.0.1:25\n[spool]\ndir = %s/spool\n"
                        "[deliver]\nenabled = no\nmaildir_root = %s/mail\n" % (d, d))
            r = subprocess.run([os.path.join(BIN, "ringmx"), "--check", "-c", conf],
                               capture_output=True, text=True, timeout=30)
            _knows_deliver.append(r.returncode == 0)
    return _knows_deliver[0]


class Server:
    def __init__(self, tmp_path, sections):
        self.dir = tmp_path
        self.host = "127.0.0.1"
        self.port = free_port()
        self.spool = str(tmp_path / "spool")
        self.conf = str(tmp_path / "ringmx.conf")
        self.logfile = str(tmp_path / "ringmx.log")
        server = {
            "listen": "%s:%d" % (self.host, self.port),
            "hostname": "mx.test",
            "shards": "2",
        }
        spool = {"dir": self.spool, "fsync": "yes"}
        accept = {"domains": "localhost example.test", "relay_networks": "127.0.0.1/32 ::1/128"}
        server.update(sections.get("server", {}))
        # A test's own listen list may name the fixture's port as {port}.
        server["listen"] = server["listen"].replace("{port}", str(self.port))
        spool.update(sections.get("spool", {}))
        accept.update(sections.get("accept", {}))
        self.sections = {"server": server, "spool": spool, "accept": accept}
        # [deliver]: off unless the test asks for delivery; Maildirs always under tmp_path.
        self.maildir = str(tmp_path / "mail")
        if "deliver" in sections or binary_knows_deliver():
            deliver = {"enabled": "yes" if "deliver" in sections else "no",
                       "maildir_root": self.maildir}
            deliver.update(sections.get("deliver") or {})
            self.sections["deliver"] = deliver
        for name in ("queue", "transport", "dns"):
            if sections.get(name) is not None:
                self.sections[name] = dict(sections[name])
        for name, kv in (sections.get("extra") or {}).items():
            self.sections[name] = dict(kv)
        self.write_config()
        self.proc = None

    def write_config(self):
        with open(self.conf, "w") as f:
            for name, kv in self.sections.items():
                f.write("[%s]\n" % name)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

    def start(self):
        self.log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "ringmx"), "-c", self.conf],
                                     stdout=self.log_fh, stderr=self.log_fh)
        wait_port(self.host, self.port, proc=self.proc)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log_fh.close()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log_fh.close()

    def log(self):
        with open(self.logfile, "r", errors="replace") as f:
            return f.read()

    def log_events(self, event):
        """The log lines with event=EVENT."""
        pat = re.compile(r"(^|\s)event=%s(\s|$)" % re.escape(event))
        return [line for line in self.log().splitlines() if pat.search(line)]

    def wait_log(self, event, count=1, timeout=5.0):
        """Waits until the log has at least `count` lines with event=EVENT; returns them."""
        deadline = time.time() + timeout
        while True:
            lines = self.log_events(event)
            if len(lines) >= count:
                return lines
            if time.time() > deadline:
                raise AssertionError("no %d x event=%s in the log within %.1f s; log:\n%s"
                                     % (count, event, timeout, self.log()[-3000:]))
            time.sleep(0.02)

    def reload(self, **sections):
        """Rewrites the config file with these section updates and sends SIGHUP."""
        for name, kv in sections.items():
            self.sections.setdefault(name, {}).update(kv)
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    def spool_records(self):
        """Every record in the spool, decoded by ringmx-spool export (JSON lines)."""
        import base64
        import json
        out = subprocess.run([os.path.join(BIN, "ringmx-spool"), "-d", self.spool, "export"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        recs = []
        for line in out.splitlines():
            r = json.loads(line)
            r["message"] = base64.b64decode(r["message_b64"])
            recs.append(r)
        return recs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def ringmx_factory(tmp_path, request):
    servers = []

    def make(**sections):
        d = tmp_path / ("s%d" % len(servers))
        d.mkdir()
        srv = Server(d, sections)
        servers.append(srv)
        return srv.start()

    yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for srv in servers:  # shown under "Captured stdout teardown"
            print("---- %s (last 40 lines)\n%s" % (srv.logfile,
                                                   "\n".join(srv.log().splitlines()[-40:])))
    for srv in servers:
        rc = srv.stop()
        # A server a test killed on purpose (SIGKILL) reports -9.
        assert rc in (0, -9, None), "ringmx exited with %r; log:\n%s" % (rc, srv.log()[-3000:])


@pytest.fixture
def ringmx(ringmx_factory):
    return ringmx_factory()


# ---- outbound delivery ------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "outbound: needs the outbound delivery engine (issue 5); deselect with "
        "-m 'not outbound' while it is being written")


@pytest.fixture(scope="session")
def outbound_nsd(tmp_path_factory):
    """nsd on a free loopback port serving tests/integration/dns/outbound.zone (out.test.);
    .port for [dns] resolvers, .drill(TYPE, NAME) to ask it."""
    import shutil
    from outbound import Nsd
    if shutil.which("nsd") is None:
        pytest.fail("nsd is not installed (scripts/install-deps.sh --test)")
    ns = Nsd(tmp_path_factory.mktemp("outbound-nsd")).start()
    yield ns
    ns.stop()


@pytest.fixture
def receivers():
    """A factory for receivers, stopped after the test:
        rcv = receivers(addr, pipelining=..., chunking=..., lmtp=...)   # outbound.Receiver
        aio = receivers(addr, port, aio=True, lmtp=...)                # aiosmtpd
    Started at once (start=False to leave it down). After the test, no Receiver may have
    recorded a protocol violation by the client."""
    from outbound import AioReceiver, Receiver
    made = []

    def make(host=None, port=25, aio=False, start=True, **kw):
        rcv = AioReceiver(host, port, **kw) if aio else Receiver(host, port, **kw)
        made.append(rcv)
        return rcv.start() if start else rcv

    yield make
    for rcv in made:
        rcv.stop()
    bad = [v for rcv in made for v in getattr(rcv, "violations", [])]
    assert not bad, "SMTP client violations seen by the receivers:\n" + "\n".join(bad)
