"""Shared fixtures: start the real ringmx binary on a free loopback port with a temp config.

Use:   def test_x(ringmx): ringmx.port, ringmx.spool, ringmx.log()
Or:    def test_y(ringmx_factory): srv = ringmx_factory(server={"max_recipients": 5})
Binaries come from $RINGMX_BIN (default: ./bin), so `make check-asan` runs the same tests
against the sanitizer build.
"""
import os
import re
import signal
import socket
import subprocess
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


@pytest.fixture
def ringmx_factory(tmp_path):
    servers = []

    def make(**sections):
        d = tmp_path / ("s%d" % len(servers))
        d.mkdir()
        srv = Server(d, sections)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        rc = srv.stop()
        # A server a test killed on purpose (SIGKILL) reports -9.
        assert rc in (0, -9, None), "ringmx exited with %r; log:\n%s" % (rc, srv.log()[-3000:])


@pytest.fixture
def ringmx(ringmx_factory):
    return ringmx_factory()
