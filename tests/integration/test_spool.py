"""Spool durability: torn tails, no 250 before the write is stable, graceful stop, the tool.

DESIGN.md "Durable before 250", invariants 1 and 2; queue/spool.h, queue/spool_scan.h,
queue/spool_main.c (ringmx-spool).
"""
import collections
import errno
import glob
import os
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import BIN, Server
from spoolcheck import (Corpus, Sent, Wire, bdat_wire, dot_stuff, log_events, logfmt, new_rng,
                        record_problems)

SPOOL_TOOL = os.path.join(BIN, "ringmx-spool")


def spool_tool(spool, *args):
    return subprocess.run([SPOOL_TOOL, "-d", spool] + list(args), capture_output=True, text=True)


def summary(text):
    """The ringmx-spool summary line (segments=.. records=.. ...) in text, as ints."""
    lines = [l for l in text.splitlines() if l.startswith("segments=")]
    assert len(lines) == 1, "expected one summary line in %r" % text
    return {k: int(v) for k, v in logfmt(lines[0]).items()}


def send_data(w, m):
    """MAIL, RCPT.., DATA pipelined, then the message; records the outcome in m."""
    w.send(b"MAIL FROM:<%s>\r\n" % m.sender.encode()
           + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in m.rcpts) + b"DATA\r\n")
    codes = [w.reply()[0] for _ in range(2 + len(m.rcpts))]
    assert codes == [250] * (1 + len(m.rcpts)) + [354], codes
    w.send(dot_stuff(m.body))
    code, line = w.reply()
    m.outcome(line)
    return code, line


def send_bdat(w, m, parts):
    w.send(b"MAIL FROM:<%s>\r\n" % m.sender.encode()
           + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in m.rcpts) + bdat_wire(parts))
    codes = [w.reply()[0] for _ in range(1 + len(m.rcpts) + len(parts) - 1)]
    assert codes == [250] * len(codes), codes
    code, line = w.reply()
    m.outcome(line)
    return code, line


def data_msg(corpus, uid, size, sender="from@example.test", rcpts=("to@example.test",)):
    return Sent(uid, "data", sender, list(rcpts), corpus.data_body(uid, size), False)


def bdat_msg(corpus, uid, size, sender="from@example.test", rcpts=("to@example.test",)):
    return Sent(uid, "bdat", sender, list(rcpts), corpus.bdat_body(uid, size), True)


def check_spool(srv, msgs):
    """Every message in msgs is in the spool, whole, under the qid of its 250."""
    recs = srv.spool_records()
    by_qid = {r["qid"]: r for r in recs}
    bad = ["qid %s names %d records (a queue id was given out twice)" % (q, n)
           for q, n in collections.Counter(r["qid"] for r in recs).items() if n > 1]
    for m in msgs:
        assert m.acked, m
        r = by_qid.get(m.qid)
        if r is None:
            bad.append("LOST: %r" % m)
        else:
            bad += ["%s: %s" % (m.uid, p) for p in record_problems(r, m)]
    assert not bad, "\n".join(bad[:20])
    return by_qid


def segments(spool):
    return sorted(glob.glob(os.path.join(spool, "seg-*.rmx")))


# ---- a torn tail ------------------------------------------------------------------------

DAMAGE = ["truncate_mid_record", "append_partial_record", "append_garbage", "corrupt_mid_segment"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_torn_tail_is_reported_and_skipped_not_a_crash(ringmx_factory, damage):
    # One shard: every record goes to one segment, so "the last record" is well defined.
    srv = ringmx_factory(server={"shards": "1"})
    corpus = Corpus(new_rng(7))
    w = Wire(srv.host, srv.port)
    msgs = []
    for i in range(6):
        m = data_msg(corpus, "u-torn-%d" % i, 3000 + 500 * i)
        assert send_data(w, m)[0] == 250
        msgs.append(m)
    w.close()
    assert srv.stop() == 0, srv.log()[-2000:]
    recs = srv.spool_records()
    assert len(recs) == 6
    segs = segments(srv.spool)
    assert len(segs) == 1, segs
    seg = segs[0]
    size = os.path.getsize(seg)
    last, first = recs[-1], recs[0]
    assert last["segment"] == os.path.basename(seg)

    lost = set()  # qids the damage destroys
    want = {"truncated_tails": 0, "corrupt_regions": 0}
    if damage == "truncate_mid_record":
        os.truncate(seg, last["offset"] + (size - last["offset"]) // 2)
        lost.add(last["qid"])
        want["truncated_tails"] = 1
    elif damage == "append_partial_record":
        # A write torn by a crash: the first part of a valid record, then the end of the file.
        with open(seg, "rb") as f:
            f.seek(first["offset"])
            part = f.read(200)
        with open(seg, "ab") as f:
            f.write(part)
        want["truncated_tails"] = 1
    elif damage == "append_garbage":
        with open(seg, "ab") as f:
            f.write(b"\xde\xad\xbe\xef garbage after the last record" * 20)
        want["corrupt_regions"] = 1
    elif damage == "corrupt_mid_segment":
        # A bad byte inside the first record: it is lost, the records after it are not.
        with open(seg, "r+b") as f:
            f.seek(first["offset"] + 200)
            b = f.read(1)
            f.seek(first["offset"] + 200)
            f.write(bytes([b[0] ^ 0xff]))
        lost.add(first["qid"])
        want["corrupt_regions"] = 1
    kept = [m for m in msgs if m.qid not in lost]

    # The tool reads the damaged spool, says what it skipped, and exits 0.
    for cmd in ("list", "export"):
        p = spool_tool(srv.spool, cmd)
        assert p.returncode == 0, p.stderr
        st = summary(p.stderr)
        assert st["records"] == len(kept), st
        for k, v in want.items():
            assert st[k] == v, (k, st)
        assert st["skipped_bytes"] > 0, st
        assert "warn: " in p.stderr and os.path.basename(seg) in p.stderr, p.stderr
        assert len(p.stdout.splitlines()) == len(kept)
    check_spool(srv, kept)

    # The server starts on it, reports the damage, counts what is left, and takes mail.
    srv.start()
    log = srv.log()
    dmg = log_events(log, "spool_damage")
    assert len(dmg) == 1, "expected one spool_damage event:\n%s" % log[-3000:]
    assert dmg[0]["segment"].endswith(os.path.basename(seg))
    assert dmg[0]["problem"] in ("truncated tail", "corrupt record"), dmg[0]
    assert (dmg[0]["problem"] == "truncated tail") == (want["truncated_tails"] == 1), dmg[0]
    assert int(dmg[0]["skipped"]) > 0
    rec_ev = log_events(log, "spool_recovered")[-1]
    assert int(rec_ev["records"]) == len(kept), rec_ev
    for k, v in want.items():
        assert int(rec_ev[k]) == v, (k, rec_ev)

    w = Wire(srv.host, srv.port)
    m = data_msg(corpus, "u-torn-after", 5000)
    code, line = send_data(w, m)
    assert code == 250, line
    w.close()
    assert srv.stop() == 0, srv.log()[-2000:]
    # The new record went to a new segment, never after the damaged bytes.
    assert len(segments(srv.spool)) == 2
    check_spool(srv, kept + [m])
    st = summary(spool_tool(srv.spool, "stats").stdout)
    assert st["records"] == len(kept) + 1
    for k, v in want.items():
        assert st[k] == v, (k, st)


# ---- invariant 1: the 250 waits for the write (and its fdatasync) ---------------------

def fill(path):
    """Writes a file until the file system is full; returns its path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                if os.write(fd, chunk) == 0:
                    break
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return path


def test_no_250_before_the_message_is_durable(tmp_path):
    """With the spool on a full file system every write fails: the client must get 451 (never
    250), the server must stay up, and once there is room again mail is taken again."""
    srv = Server(tmp_path, {"server": {"shards": "1"}})
    os.makedirs(srv.spool)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", srv.spool],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs for the spool (needs root): %s" % p.stderr.strip())
    try:
        srv.start()
        corpus = Corpus(new_rng(11))
        w = Wire(srv.host, srv.port)
        ok1 = data_msg(corpus, "u-full-ok1", 2000)
        code, line = send_data(w, ok1)
        assert code == 250, line

        filler = fill(os.path.join(srv.spool, "filler"))
        failed = []
        for i in range(3):
            m = data_msg(corpus, "u-full-data-%d" % i, 100 * 1024 + i)
            code, line = send_data(w, m)
            assert not m.acked and code == 451 and line.startswith(b"451 4.3.0"), (
                "a message that could not be written got %r" % line)
            failed.append(m)
        m = bdat_msg(corpus, "u-full-bdat", 60 * 1024)
        code, line = send_bdat(w, m, [m.body[:1000], m.body[1000:]])
        assert not m.acked and code == 451, "BDAT LAST on a full disk got %r" % line
        # A small message fails too: after a failed batch the spool moves to a new segment.
        m = data_msg(corpus, "u-full-small", 300)
        code, line = send_data(w, m)
        assert not m.acked and code == 451, "a small message on a full disk got %r" % line

        assert srv.proc.poll() is None, "the server died on ENOSPC:\n%s" % srv.log()[-3000:]
        w.send(b"NOOP\r\n")
        assert w.reply()[0] == 250, "the session is not usable after a 451"
        assert log_events(srv.log(), "spool_error"), "no event=spool_error in the log"

        os.unlink(filler)
        ok2 = data_msg(corpus, "u-full-ok2", 100 * 1024)
        code, line = send_data(w, ok2)
        assert code == 250, "after space was freed: %r\n%s" % (line, srv.log()[-3000:])
        ok3 = bdat_msg(corpus, "u-full-ok3", 50 * 1024)
        code, line = send_bdat(w, ok3, [ok3.body])
        assert code == 250, "after space was freed (BDAT): %r" % line
        w.send(b"QUIT\r\n")
        w.close()
        assert srv.stop() == 0, srv.log()[-2000:]
        check_spool(srv, [ok1, ok2, ok3])
        st = summary(spool_tool(srv.spool, "stats").stdout)
        assert st["corrupt_regions"] == 0, st
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        subprocess.run(["umount", srv.spool], capture_output=True)
        if os.path.ismount(srv.spool):
            subprocess.run(["umount", "-l", srv.spool], capture_output=True)


# ---- graceful stop ------------------------------------------------------------------------

def test_a_graceful_stop_commits_everything_acknowledged(ringmx_factory):
    srv = ringmx_factory(spool={"segment_size": "1M"})
    corpus = Corpus(new_rng(21))
    n_conns, per_conn = 5, 20
    sent, errors = [], []
    idle = []  # connections left open (and idle) for the stop
    lock = threading.Lock()

    def client(k):
        rng = new_rng(100 + k)
        c = corpus.with_rng(rng)
        try:
            s = smtplib.SMTP(srv.host, srv.port, timeout=10)
            s.ehlo("graceful.client")
            for i in range(per_conn):
                uid = "u-grace-%d-%d" % (k, i)
                body = c.data_body(uid, c.size(100, 64 * 1024))
                m = Sent(uid, "data", "s%d@example.test" % k, ["r%d.%d@example.test" % (k, i)],
                         body, False)
                with lock:
                    sent.append(m)
                s.mail(m.sender)
                s.rcpt(m.rcpts[0])
                code, resp = s.data(m.body)
                m.outcome(b"%d %s" % (code, resp))
            with lock:
                idle.append(s)
        except Exception as e:
            errors.append("client %d: %r" % (k, e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(sent) == n_conns * per_conn and all(m.acked for m in sent), [
        m for m in sent if not m.acked][:5]

    # One more client is in the middle of DATA when the stop comes: it may finish.
    w = Wire(srv.host, srv.port)
    late = data_msg(corpus, "u-grace-late", 50000)
    w.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (late.sender.encode(),
                                                          late.rcpts[0].encode()))
    assert [w.reply()[0] for _ in range(3)] == [250, 250, 354]
    stuffed = dot_stuff(late.body)
    w.send(stuffed[:20000])
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    w.send(stuffed[20000:])
    code, line = w.reply()
    late.outcome(line)
    assert code == 250, "a transaction under way at SIGTERM got %r" % line
    code, line = w.reply()
    assert code == 421, "after that transaction, expected 421, got %r" % line
    w.close()
    # The idle connections were told 421 and closed.
    for s in idle:
        code, resp = s.getreply()
        assert code == 421, (code, resp)
        s.close()
    rc = srv.proc.wait(timeout=15)
    assert rc == 0, "graceful stop exited with %r:\n%s" % (rc, srv.log()[-3000:])
    check_spool(srv, sent + [late])
    exits = log_events(srv.log(), "exit")
    assert exits and int(exits[-1]["messages"]) == len(sent) + 1, exits
    st = summary(spool_tool(srv.spool, "stats").stdout)
    assert st["records"] == len(sent) + 1
    assert st["truncated_tails"] == 0 and st["corrupt_regions"] == 0, st


# ---- ringmx-spool ---------------------------------------------------------------------------

LIST_KEYS = ["qid", "segment", "offset", "size", "from", "nrcpt", "rcpts", "arrival_ms", "flags"]


def test_spool_tool_lists_records(ringmx_factory):
    srv = ringmx_factory(server={"shards": "1"})
    corpus = Corpus(new_rng(31))
    w = Wire(srv.host, srv.port)
    msgs = []
    envs = [
        ("plain@example.test", ["one@example.test"]),
        ("", ["postmaster@example.test"]),  # the null sender
        ("multi@example.test", ["a@example.test", "b@localhost", "c@relay.example"]),
    ]
    t0 = int(time.time() * 1000)
    for i, (sender, rcpts) in enumerate(envs):
        m = data_msg(corpus, "u-list-%d" % i, 1000 + 777 * i, sender, rcpts)
        assert send_data(w, m)[0] == 250
        msgs.append(m)
    b = bdat_msg(corpus, "u-list-bdat", 4000)
    assert send_bdat(w, b, [b.body[:10], b.body[10:]])[0] == 250
    msgs.append(b)
    # BODY=8BITMIME puts the 8bitmime flag on the record.
    e = data_msg(corpus, "u-list-8bit", 1500)
    w.send(b"MAIL FROM:<%s> BODY=8BITMIME\r\nRCPT TO:<%s>\r\nDATA\r\n"
           % (e.sender.encode(), e.rcpts[0].encode()))
    assert [w.reply()[0] for _ in range(3)] == [250, 250, 354]
    w.send(dot_stuff(e.body))
    e.outcome(w.reply()[1])
    assert e.acked
    msgs.append(e)
    w.close()
    t1 = int(time.time() * 1000)
    assert srv.stop() == 0

    by_qid = check_spool(srv, msgs)
    p = spool_tool(srv.spool, "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(msgs)
    st = summary(p.stderr)
    assert st == {"segments": 1, "records": len(msgs), "corrupt_regions": 0,
                  "truncated_tails": 0, "skipped_bytes": 0}, st
    seg_size = os.path.getsize(segments(srv.spool)[0])
    prev_off = -1
    for line, m in zip(lines, msgs):
        kv = logfmt(line)
        assert list(kv) == LIST_KEYS, line
        assert kv["qid"] == m.qid
        assert kv["segment"] == os.path.basename(segments(srv.spool)[0])
        off = int(kv["offset"])
        assert prev_off < off < seg_size
        prev_off = off
        assert int(kv["size"]) == len(by_qid[m.qid]["message"])
        assert kv["from"] == "<%s>" % m.sender, line
        assert int(kv["nrcpt"]) == len(m.rcpts)
        assert kv["rcpts"] == ",".join(m.rcpts)
        assert t0 - 1000 <= int(kv["arrival_ms"]) <= t1 + 1000, line
        flags = set(kv["flags"].split(",")) - {""}
        assert ("binary" in flags) == m.binary, line
        assert ("8bitmime" in flags) == (m is e), line

    # stats: the summary line alone, on stdout.
    p = spool_tool(srv.spool, "stats")
    assert p.returncode == 0 and p.stderr == ""
    assert len(p.stdout.splitlines()) == 1 and summary(p.stdout) == st
    # export: one JSON line per record, summary on stderr (checked by check_spool above).
    p = spool_tool(srv.spool, "export")
    assert p.returncode == 0 and summary(p.stderr) == st
    assert len(p.stdout.splitlines()) == len(msgs)
    # Exit codes: 1 for an unreadable directory, 2 for a usage error, 0 for -h.
    p = spool_tool(os.path.join(srv.spool, "nonexistent"), "list")
    assert p.returncode == 1 and "nonexistent" in p.stderr, p
    assert spool_tool(srv.spool, "frobnicate").returncode == 2
    assert subprocess.run([SPOOL_TOOL], capture_output=True).returncode == 2
    h = subprocess.run([SPOOL_TOOL, "-h"], capture_output=True, text=True)
    assert h.returncode == 0 and "usage" in h.stdout
    # An empty spool: no records, a zero summary, exit 0.
    empty = srv.dir / "empty"
    empty.mkdir()
    p = spool_tool(str(empty), "list")
    assert p.returncode == 0 and p.stdout == ""
    assert summary(p.stderr)["records"] == 0


# ---- found while writing these tests ----------------------------------------------------

def test_queue_ids_stay_unique_across_a_restart(tmp_path):
    """A queue id names one message: a restart within the same second must not hand out the
    ids of the run before it again (the spool, logs and delivery journal key on it)."""
    srv = Server(tmp_path, {"server": {"shards": "1"}})
    corpus = Corpus(new_rng(41))
    t = time.time()
    time.sleep(1.02 - (t - int(t)))  # both runs in one second, if the machine keeps up
    qids = []
    try:
        for i in range(2):
            srv.start()
            w = Wire(srv.host, srv.port)
            m = data_msg(corpus, "u-qid-%d" % i, 500)
            assert send_data(w, m)[0] == 250
            qids.append(m.qid)
            w.close()
            assert srv.stop() == 0
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
    recs = srv.spool_records()
    assert len(recs) == 2
    assert qids[0] != qids[1], "the restarted server gave out qid %s again" % qids[0]


@pytest.mark.parametrize("first", [b"", b"hello"])
def test_bdat_0_last_ends_the_message(ringmx_factory, first):
    """RFC 3030: "BDAT 0 LAST" ends the message (after earlier chunks, or as the only one);
    the 250 must come without the client sending anything more."""
    srv = ringmx_factory()
    w = Wire(srv.host, srv.port, timeout=3)
    parts = [first, b""] if first else [b""]
    m = Sent("u-bdat0", "bdat", "a@example.test", ["b@example.test"], first, True)
    try:
        code, line = send_bdat(w, m, parts)
    except TimeoutError:
        pytest.fail("no reply to BDAT 0 LAST within 3 s (it ends the message)")
    finally:
        w.close()
    assert code == 250 and m.acked, line
    assert srv.stop() == 0
    check_spool(srv, [m])


def test_a_second_ringmx_on_the_same_spool_refuses_to_start(ringmx):
    # SO_REUSEPORT would let it share the port; the spool lock is what stops it.
    second = subprocess.run([os.path.join(BIN, "ringmx"), "-c", ringmx.conf],
                            capture_output=True, text=True, timeout=10)
    assert second.returncode == 1
    assert "the spool is in use by another ringmx (pid %d)" % ringmx.proc.pid in second.stderr
    # The first one is untouched and still takes mail.
    s = smtplib.SMTP(ringmx.host, ringmx.port)
    s.sendmail("a@b.test", ["u@localhost"], "Subject: x\r\n\r\nstill here\r\n")
    s.quit()
    assert len(ringmx.spool_records()) == 1
