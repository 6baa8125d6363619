"""DESIGN.md invariant 2: `kill -9` at any moment loses no acknowledged message.

Each iteration (one per seed) starts ringmx (fsync on, 2 shards, 1 MiB segments so that
segments roll over), lets eight clients send messages as fast as they can (smtplib one message
per connection, smtplib many per connection, raw pipelined DATA, raw pipelined BDAT), SIGKILLs
the server after a seeded random delay, and then checks that every message whose final 250 the
client read is in the spool, byte for byte, with its envelope and the queue id of the 250.
The server must then start again on that spool, count every record, and take new mail.
"""
import collections
import os
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import BIN
from spoolcheck import (Corpus, Sent, Wire, bdat_wire, chunks, dot_stuff, log_events, logfmt,
                        new_rng, record_problems, record_uid)

SEEDS = range(20)
RCPT_DOMAINS = ["example.test", "localhost", "relay.example"]  # the last one is relayed


def envelope(rng, wid, n):
    if rng.random() < 0.1:
        sender = ""  # the null sender <>
    else:
        sender = "s%d.%d@example.test" % (wid, n)
    rcpts = ["r%d.%d.%d@%s" % (wid, n, i, rng.choice(RCPT_DOMAINS))
             for i in range(rng.choice([1, 1, 1, 2, 3]))]
    return sender, rcpts


class Clients:
    """The client threads of one iteration and everything they sent."""

    def __init__(self, srv, seed):
        self.srv = srv
        self.seed = seed
        self.sent = []          # every Sent, in the order its sending began
        self.errors = []        # unexpected replies or exceptions before the kill
        self.killed = threading.Event()
        self.corpus = Corpus(new_rng(seed))
        self.threads = []

    def new_msg(self, rng, corpus, wid, n, binary):
        uid = "u%d-%d-%d" % (self.seed, wid, n)
        sender, rcpts = envelope(rng, wid, n)
        size = corpus.size()
        if binary:
            body = corpus.bdat_body(uid, size)
        else:
            body = corpus.data_body(uid, size)
        m = Sent(uid, "bdat" if binary else "data", sender, rcpts, body, binary)
        self.sent.append(m)
        return m

    def expect(self, what, code, line, want):
        if code != want and not self.killed.is_set():
            self.errors.append("%s: got %r, expected %d" % (what, line, want))
            raise ConnectionError("unexpected reply")

    # -- the four kinds of client ------------------------------------------------------

    def smtplib_client(self, wid, rng, corpus, per_conn):
        n = 0
        while not self.killed.is_set():
            with smtplib.SMTP(self.srv.host, self.srv.port, timeout=10) as s:
                s.ehlo("smtplib.client")
                for _ in range(per_conn):
                    m = self.new_msg(rng, corpus, wid, n, False)
                    n += 1
                    code, resp = s.mail(m.sender)
                    self.expect("MAIL", code, resp, 250)
                    for r in m.rcpts:
                        code, resp = s.rcpt(r)
                        self.expect("RCPT", code, resp, 250)
                    code, resp = s.data(m.body)  # smtplib dot-stuffs
                    m.outcome(b"%d %s" % (code, resp))
                    self.expect("end of DATA " + m.uid, code, resp, 250)
                    if rng.random() < 0.1:
                        code, resp = s.rset()
                        self.expect("RSET", code, resp, 250)

    def envelope_wire(self, m):
        out = [b"MAIL FROM:<%s>\r\n" % m.sender.encode()]
        out += [b"RCPT TO:<%s>\r\n" % r.encode() for r in m.rcpts]
        return b"".join(out)

    def pipelined_data_client(self, wid, rng, corpus):
        """RFC 2920: MAIL, RCPT.., DATA in one write; then the message, its terminator and
        the next MAIL, RCPT.., DATA in one write."""
        w = Wire(self.srv.host, self.srv.port)
        n = 0
        m = self.new_msg(rng, corpus, wid, n, False)
        w.send(self.envelope_wire(m) + b"DATA\r\n")
        while not self.killed.is_set():
            for _ in range(1 + len(m.rcpts)):
                code, line = w.reply()
                self.expect("MAIL/RCPT", code, line, 250)
            code, line = w.reply()
            self.expect("DATA", code, line, 354)
            n += 1
            nxt = self.new_msg(rng, corpus, wid, n, False)
            w.send(dot_stuff(m.body) + self.envelope_wire(nxt) + b"DATA\r\n")
            code, line = w.reply()
            m.outcome(line)
            self.expect("end of DATA " + m.uid, code, line, 250)
            m = nxt

    def bdat_client(self, wid, rng, corpus):
        """RFC 3030 with pipelining: MAIL, RCPT.., every BDAT chunk, in one write."""
        w = Wire(self.srv.host, self.srv.port)
        n = 0
        while not self.killed.is_set():
            m = self.new_msg(rng, corpus, wid, n, True)
            n += 1
            parts = chunks(rng, m.body)
            w.send(self.envelope_wire(m) + bdat_wire(parts))
            for _ in range(1 + len(m.rcpts)):
                code, line = w.reply()
                self.expect("MAIL/RCPT", code, line, 250)
            for i in range(len(parts) - 1):
                code, line = w.reply()
                self.expect("BDAT chunk %d of %s" % (i, m.uid), code, line, 250)
                if b"queued as" in line:
                    self.errors.append("a non-LAST BDAT chunk got %r" % line)
            code, line = w.reply()
            m.outcome(line)
            self.expect("BDAT LAST " + m.uid, code, line, 250)

    def run(self, wid, fn, *args):
        rng = new_rng(self.seed * 1000 + wid)
        corpus = self.corpus.with_rng(rng)
        try:
            fn(wid, rng, corpus, *args)
        except (OSError, smtplib.SMTPException, ConnectionError) as e:
            if not self.killed.is_set() and not self.errors:
                self.errors.append("client %d (%s): %r before the kill" % (wid, fn.__name__, e))
        except Exception as e:  # a bug in the test itself: report it, never hide it
            self.errors.append("client %d (%s) crashed: %r" % (wid, fn.__name__, e))

    def start(self):
        plan = [
            (self.smtplib_client, 1), (self.smtplib_client, 1),   # one message per connection
            (self.smtplib_client, 50), (self.smtplib_client, 50),  # many per connection
            (self.pipelined_data_client,), (self.pipelined_data_client,),
            (self.bdat_client,), (self.bdat_client,),
        ]
        for wid, (fn, *args) in enumerate(plan):
            t = threading.Thread(target=self.run, args=(wid, fn) + tuple(args), daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join(timeout=15)
            assert not t.is_alive(), "a client thread hangs after the server was killed"


def spool_tool(srv, cmd):
    p = subprocess.run([os.path.join(BIN, "ringmx-spool"), "-d", srv.spool, cmd],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sigkill_at_any_moment_loses_no_acknowledged_message(ringmx_factory, seed):
    rng = new_rng(seed)
    srv = ringmx_factory(spool={"segment_size": "1M"})
    clients = Clients(srv, seed)
    clients.start()
    time.sleep(0.2 + rng.random() * 1.3)
    clients.killed.set()
    srv.kill()  # SIGKILL
    assert srv.proc.returncode == -signal.SIGKILL
    clients.join()
    assert not clients.errors, "\n".join(clients.errors[:10])

    acked = [m for m in clients.sent if m.acked]
    assert acked, "no message was acknowledged before the kill: the test proves nothing"

    recs = srv.spool_records()
    by_qid = {}
    for r in recs:
        assert r["qid"] not in by_qid, "two records with qid %s" % r["qid"]
        by_qid[r["qid"]] = r
    by_uid = {m.uid: m for m in clients.sent}

    problems = []
    for m in acked:
        r = by_qid.get(m.qid)
        if r is None:
            problems.append("LOST: %r" % m)
            continue
        problems += ["%s (qid %s): %s" % (m.uid, m.qid, p) for p in record_problems(r, m)]
    # Records of messages that got no 250 may be there; if they are, they must be whole.
    for r in recs:
        uid = record_uid(r)
        m = by_uid.get(uid)
        if m is None:
            problems.append("record %s holds no message we sent (uid %r)" % (r["qid"], uid))
        elif not m.acked:
            problems += ["unacknowledged %s in the spool: %s" % (uid, p)
                         for p in record_problems(r, m)]
    assert not problems, "%d of %d acknowledged messages wrong:\n%s" % (
        len(problems), len(acked), "\n".join(problems[:20]))

    # A crash tears at most the tail of a segment being written; nothing in the middle.
    st = {k: int(v) for k, v in logfmt(spool_tool(srv, "stats")).items()}
    assert st["records"] == len(recs)
    assert st["corrupt_regions"] == 0, st

    # The server starts again on this spool, counts every record, and takes new mail.
    srv.start()
    rec_ev = log_events(srv.log(), "spool_recovered")
    assert rec_ev, "no event=spool_recovered in the log"
    last = rec_ev[-1]
    assert int(last["records"]) == len(recs) >= len(acked), last
    assert int(last["truncated_tails"]) == st["truncated_tails"], (last, st)
    assert int(last["corrupt_regions"]) == 0, last

    w = Wire(srv.host, srv.port)
    after = Sent("u%d-after" % seed, "data", "after@example.test", ["after@example.test"],
                 clients.corpus.data_body("u%d-after" % seed, 2000), False)
    w.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (after.sender.encode(),
                                                          after.rcpts[0].encode()))
    assert [w.reply()[0] for _ in range(3)] == [250, 250, 354]
    w.send(dot_stuff(after.body))
    code, line = w.reply()
    after.outcome(line)
    assert after.acked, "after the restart the server answered %r" % line
    w.send(b"QUIT\r\n")
    assert w.reply()[0] == 221
    w.close()
    assert srv.stop() == 0, srv.log()[-2000:]

    # Everything is still there after the restart, and no queue id was given out twice.
    qids2 = [logfmt(l)["qid"] for l in spool_tool(srv, "list").splitlines()]
    dup = sorted(q for q, n in collections.Counter(qids2).items() if n > 1)
    assert not dup, "queue ids given out twice (before the kill and after the restart): %s" % dup
    assert after.qid in qids2
    missing = [m for m in acked if m.qid not in set(qids2)]
    assert not missing, "gone after the restart: %r" % missing[:5]
