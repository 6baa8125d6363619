"""ringmxctl against a live ringmx: the queue views (queue, list, show), the actions (flush,
delete, hold/release, suspend/resume), JSON answers, and the errors (no daemon, bad requests,
delivery off, a control socket in use).

Mail goes to ctl.test (and ctl2.test) through [transport] to a receiver on a loopback address
from outbound.loopback_address(), port 2525: no DNS. A receiver left down refuses the
connection, so the message is deferred and the site backs off for [queue] retry; with retry =
1h nothing but ringmxctl can make it go before the test ends."""
import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import BIN, free_port
from outbound import (events, loopback_address, make_message, maildir_new, outbound_sections,
                      received_qid, send, wait_events, wait_until)

pytestmark = pytest.mark.outbound

CTL = os.path.join(BIN, "ringmxctl")
SENDER = "sender@localhost"


def sock(srv):
    """The default control socket: ringmx.ctl in the spool directory."""
    return os.path.join(srv.spool, "ringmx.ctl")


def ctl(srv, *args, check=True, path=None):
    r = subprocess.run([CTL, "-s", path or sock(srv), *args], capture_output=True, text=True,
                       timeout=20)
    if check:
        assert r.returncode == 0, "ringmxctl %s: rc %d\n%s%s" % (" ".join(args), r.returncode,
                                                                   r.stdout, r.stderr)
    return r


def ctl_json(srv, *args):
    return json.loads(ctl(srv, "--json", *args).stdout)


def mta(ringmx_factory, addr, retry="1h", queue=None, **deliver):
    """A delivering ringmx whose ctl.test and ctl2.test go to addr:2525."""
    q = {"retry": retry}
    q.update(queue or {})
    hop = "smtp:[%s]:2525" % addr
    return ringmx_factory(**outbound_sections(None, deliver=deliver, queue=q,
                                              transport={"ctl.test": hop, "ctl2.test": hop}))


def row(text, first):
    """The fields of the line of a text table whose first field is `first`."""
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == first:
            return f
    raise AssertionError("no row %r in:\n%s" % (first, text))


def test_queue_list_and_show_describe_a_deferred_message(ringmx_factory):
    srv = mta(ringmx_factory, loopback_address(2525))  # nothing listens there
    qid = send(srv, SENDER, ["a@ctl.test", "b@ctl.test"], make_message(subject="ctl"))
    wait_events(srv, "deferred", 2, qid=qid)

    out = ctl(srv, "queue").stdout
    assert out.splitlines()[0].split()[:6] == ["DOMAIN", "READY", "DEFERRED", "ACTIVE",
                                               "OLDEST", "BACKOFF"]
    f = row(out, "ctl.test")
    assert f[1:4] == ["0", "1", "0"], out  # ready, deferred, active
    assert "Connection refused" in out
    assert out.splitlines()[-1].startswith("total: domains=1 ready=0 deferred=1 active=0")
    q = ctl_json(srv, "queue")
    (d,) = q["domains"]
    assert (d["domain"], d["ready"], d["deferred"], d["suspended"]) == ("ctl.test", 0, 1, False)
    assert 3000 < d["backoff_s"] <= 3600 and "refused" in d["backoff_reason"], d
    assert "refused" in d["last_error"] and d["oldest_s"] < 60 and q["held"] is False
    assert q["total"]["domains"] == 1 and q["total"]["deferred"] == 1

    out = ctl(srv, "list").stdout
    f = row(out, qid)
    assert f[1:5] == ["ctl.test", "2", "1", "deferred"] and f[-1] == "<%s>" % SENDER, out
    assert out.splitlines()[-1] == "total: jobs=1 rcpts=2"
    assert qid in ctl(srv, "list", "domain", "CTL.TEST.").stdout
    assert qid in ctl(srv, "list", "sender", SENDER.upper()).stdout
    assert qid not in ctl(srv, "list", "domain", "other.test").stdout
    assert qid not in ctl(srv, "list", "sender", "<>").stdout
    (j,) = ctl_json(srv, "list", "domain", "ctl.test")["jobs"]
    assert (j["qid"], j["sender"], j["rcpts"], j["attempts"], j["state"]) == (
        qid, SENDER, ["a@ctl.test", "b@ctl.test"], 1, "deferred")
    assert 3000 < j["next_s"] <= 3600, j

    out = ctl(srv, "show", qid.upper()).stdout
    assert "qid:        %s\n" % qid in out and "from:       <%s>\n" % SENDER in out
    assert "  pending  a@ctl.test\n" in out and "  pending  b@ctl.test\n" in out
    assert "recipients: 2, 2 pending" in out and "jobs:\n" in out
    assert row(out, qid)[4] == "deferred"
    s = ctl_json(srv, "show", qid)
    assert s["message"]["recipients"] == [{"addr": "a@ctl.test", "done": False},
                                          {"addr": "b@ctl.test", "done": False}]
    assert s["message"]["from"] == SENDER and s["message"]["pending"] == 2
    assert [x["state"] for x in s["jobs"]] == ["deferred"]
    r = ctl(srv, "show", "0000000000000001", check=False)
    assert r.returncode == 1 and r.stderr == "error: no message 0000000000000001 in the queue\n"


def test_flush_delivers_deferred_mail_at_once_when_the_retry_is_an_hour_away(ringmx_factory,
                                                                            receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525, start=False)
    srv = mta(ringmx_factory, addr)
    qid = send(srv, SENDER, ["u@ctl.test"], make_message(subject="flush"))
    wait_events(srv, "deferred", qid=qid)
    rcv.start()
    time.sleep(1.0)
    assert rcv.sessions == []  # the retry and the site's backoff are an hour away
    assert ctl(srv, "flush", "other.test").stdout == (
        "flush: jobs=0 domains=0 backoffs_cleared=0\n")
    assert ctl(srv, "flush").stdout == "flush: jobs=1 domains=1 backoffs_cleared=1\n"
    (m,) = rcv.wait_messages(1, timeout=5)
    assert received_qid(m.data) == qid and m.rcpts == ["u@ctl.test"]
    wait_events(srv, "delivered", qid=qid)
    wait_until(lambda: ctl_json(srv, "queue")["domains"] == [], 5)


def test_delete_removes_mail_without_a_bounce_and_it_stays_gone_after_a_restart(
        ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525, start=False)
    srv = mta(ringmx_factory, addr)
    q1 = send(srv, SENDER, ["a@ctl.test", "b@ctl.test"], make_message(subject="one"))
    wait_events(srv, "deferred", 2, qid=q1)
    q2 = send(srv, SENDER, ["c@ctl.test"], make_message(subject="two"))
    # q2 came during the site's backoff: it waits in the scheduled queue for its end
    wait_until(lambda: row(ctl(srv, "list").stdout, q2)[4] == "deferred", 5)
    assert 3000 < int(ctl_json(srv, "list", "sender", SENDER)["jobs"][1]["next_s"]) <= 3600
    assert ctl(srv, "delete", q1).stdout == "delete: jobs=1 rcpts=2 busy=0\n"
    ev = wait_events(srv, "deleted", 2, qid=q1)
    assert sorted(e["rcpt"] for e in ev) == ["a@ctl.test", "b@ctl.test"]
    out = ctl(srv, "list").stdout
    assert q1 not in out and q2 in out
    r = ctl(srv, "delete", q1, check=False)
    assert r.returncode == 1 and "error: no message %s waiting" % q1 in r.stderr
    # what the home recorded holds across a restart: only q2 comes back, and is delivered
    assert srv.stop() == 0
    rcv.start()
    srv.start()
    (m,) = rcv.wait_messages(1, timeout=10)
    assert received_qid(m.data) == q2
    time.sleep(1.0)
    assert len(rcv.messages) == 1 and events(srv, "bounced") == []
    assert maildir_new(srv.maildir, "sender") == []  # no bounce, no warning


def test_delete_domain_removes_every_waiting_recipient_of_that_domain(ringmx_factory):
    srv = mta(ringmx_factory, loopback_address(2525))
    q1 = send(srv, SENDER, ["a@ctl.test", "x@ctl2.test"], make_message(subject="one"))
    q2 = send(srv, SENDER, ["b@ctl.test"], make_message(subject="two"))
    wait_until(lambda: ctl_json(srv, "list")["total"]["jobs"] == 3, 5)
    d = ctl_json(srv, "delete", "--domain", "ctl.test")
    assert d == {"command": "delete", "jobs": 2, "rcpts": 2, "busy": 0}
    jobs = ctl_json(srv, "list")["jobs"]
    assert [(j["qid"], j["domain"]) for j in jobs] == [(q1, "ctl2.test")]
    s = ctl_json(srv, "show", q1)["message"]
    assert s["recipients"] == [{"addr": "a@ctl.test", "done": True},
                               {"addr": "x@ctl2.test", "done": False}]
    assert ctl(srv, "show", q2, check=False).returncode == 1  # all done: gone from the home


def test_hold_and_release(ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    srv = mta(ringmx_factory, addr, queue={"hold": "yes"})  # starts held
    q1 = send(srv, SENDER, ["u@ctl.test"], make_message(subject="held at start"))
    time.sleep(1.0)
    assert rcv.sessions == []
    q = ctl_json(srv, "queue")
    assert q["held"] is True and q["domains"][0]["ready"] == 1
    assert ctl(srv, "queue").stdout.startswith("delivery is held (ringmxctl release resumes it)\n")
    assert ctl(srv, "release").stdout == "release: domains=1 held=0\n"
    rcv.wait_messages(1, timeout=5)
    # held again by the command: new mail waits, release sends it
    assert ctl_json(srv, "hold") == {"command": "hold", "held": True}
    q2 = send(srv, SENDER, ["v@ctl.test"], make_message(subject="held by ringmxctl"))
    time.sleep(1.5)
    assert len(rcv.messages) == 1 and row(ctl(srv, "list").stdout, q2)[4] == "ready"
    ctl(srv, "release")
    rcv.wait_messages(2, timeout=5)
    assert [received_qid(m.data) for m in rcv.messages] == [q1, q2]


def test_suspend_stops_one_domain_and_resume_sends_its_mail(ringmx_factory, receivers):
    addr = loopback_address(2525)
    rcv = receivers(addr, 2525)
    srv = mta(ringmx_factory, addr)
    assert ctl(srv, "suspend", "CTL.test.").stdout == "suspend: suspended=1\n"
    q1 = send(srv, SENDER, ["u@ctl.test"], make_message(subject="suspended"))
    q2 = send(srv, SENDER, ["u@ctl2.test"], make_message(subject="not suspended"))
    (m,) = rcv.wait_messages(1, timeout=5)  # the other domain of the same site goes
    assert received_qid(m.data) == q2
    time.sleep(1.0)
    assert len(rcv.messages) == 1
    d = [x for x in ctl_json(srv, "queue")["domains"] if x["domain"] == "ctl.test"]
    assert d and d[0]["suspended"] is True and d[0]["ready"] == 1, d
    assert row(ctl(srv, "queue").stdout, "ctl.test")[6] == "suspended"
    assert ctl_json(srv, "resume", "ctl.test") == {"command": "resume", "resumed": 1}
    rcv.wait_messages(2, timeout=5)
    assert received_qid(rcv.messages[1].data) == q1


def test_every_json_answer_parses(ringmx_factory):
    srv = mta(ringmx_factory, loopback_address(2525))
    qid = send(srv, SENDER, ["a@ctl.test"], make_message(subject="json"))
    wait_events(srv, "deferred", qid=qid)
    for args in (["queue"], ["list"], ["list", "domain", "ctl.test", "sender", SENDER],
                 ["show", qid], ["flush"], ["flush", "ctl.test"], ["hold"], ["release"],
                 ["suspend", "ctl2.test"], ["resume", "ctl2.test"], ["delete", qid]):
        r = ctl(srv, "--json", *args)
        assert r.stdout.endswith("}\n") and r.stdout.count("\n") == 1, r.stdout
        obj = json.loads(r.stdout)
        assert isinstance(obj, dict) and "error" not in obj, (args, obj)
    r = ctl(srv, "show", qid, "--json", check=False)  # deleted: a JSON error, exit 1
    assert r.returncode == 1 and json.loads(r.stdout) == {
        "error": "no message %s in the queue" % qid}


def test_without_a_daemon_ringmxctl_says_so_and_exits_1(ringmx_factory):
    srv = mta(ringmx_factory, loopback_address(2525))
    assert stat.S_IMODE(os.stat(sock(srv)).st_mode) == 0o600
    assert ctl(srv, "queue").returncode == 0
    r = subprocess.run([CTL, "-c", srv.conf, "queue"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0 and r.stdout.startswith("DOMAIN")
    assert srv.stop() == 0
    assert not os.path.exists(sock(srv))  # removed at stop
    for args in (["-s", sock(srv)], ["-c", srv.conf]):
        r = subprocess.run([CTL, *args, "queue"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == ("ringmxctl: cannot connect to %s: No such file or directory "
                            "(is ringmx running?)\n" % sock(srv)), r.stderr
    # kill -9 leaves the socket behind: refused, and the next start takes the path back
    srv.start()
    srv.kill()
    r = ctl(srv, "queue", check=False)
    assert r.returncode == 1 and "Connection refused (is ringmx running?)" in r.stderr
    srv.start()
    assert ctl(srv, "queue").returncode == 0


def test_bad_usage_exits_2_and_help_exits_0(tmp_path):
    path = str(tmp_path / "none.ctl")
    for args in ([], ["bogus"], ["show", "123"], ["queue", "extra"], ["--nope", "queue"],
                 ["delete", "--domain"], ["list", "sender", "a b"]):
        r = subprocess.run([CTL, "-s", path, *args], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "usage: ringmxctl" in r.stderr, (args, r.stderr)
    r = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "usage: ringmxctl" in r.stdout and "suspend DOMAIN" in r.stdout


def raw(path, data, close_write=False):
    """Sends raw bytes on the control socket (then ends its side, with close_write); returns
    the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out.decode()
            out += b


def test_the_daemon_answers_a_bad_request_with_an_error_and_the_usage(ringmx_factory):
    srv = mta(ringmx_factory, loopback_address(2525))
    out = raw(sock(srv), b"bogus\n")
    assert out.startswith("error: unknown command 'bogus'\ncommands:\n") and "flush" in out
    assert raw(sock(srv), b"--json bogus\r\n") == '{"error":"unknown command \'bogus\'"}\n'
    assert raw(sock(srv), b"x" * 5000) == "error: request too long (at most 4096 bytes)\n"
    # no '\n': the end of the input ends the line
    assert raw(sock(srv), b"queue", close_write=True).startswith("DOMAIN")
    wait_events(srv, "ctl", 4)  # each logged, the bad ones as warnings


def test_with_delivery_disabled_queue_commands_are_an_error(ringmx_factory):
    srv = ringmx_factory()  # [deliver] enabled = no
    r = ctl(srv, "queue", check=False)
    assert r.returncode == 1
    assert r.stderr == "error: delivery is disabled ([deliver] enabled = no)\n"
    r = ctl(srv, "--json", "hold", check=False)
    assert r.returncode == 1 and json.loads(r.stdout)["error"].startswith("delivery is disabled")


def test_a_control_socket_in_use_stops_a_second_daemon_at_start(ringmx_factory, tmp_path):
    path = str(tmp_path / "shared.ctl")
    ringmx_factory(server={"control_socket": path})
    conf = tmp_path / "second.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:%d\ncontrol_socket = %s\n[spool]\n"
                    "dir = %s\n" % (free_port(), path, tmp_path / "spool2"))
    r = subprocess.run([os.path.join(BIN, "ringmx"), "-c", str(conf)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1
    assert "control socket %s is in use by a running process" % path in r.stderr, r.stderr
    # a path that is not a socket is not taken either
    other = tmp_path / "file.ctl"
    other.write_text("keep me")
    conf.write_text(conf.read_text().replace(path, str(other)))
    r = subprocess.run([os.path.join(BIN, "ringmx"), "-c", str(conf)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1 and "is not a socket" in r.stderr and other.read_text() == "keep me"
