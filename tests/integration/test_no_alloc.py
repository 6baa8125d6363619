"""The pure parsers allocate nothing and do no I/O (DESIGN.md "Zero-copy parsing").

Checked on the object code itself: the parser and the DATA scanner are compiled on their own
and must not call any allocator or I/O function. A later change that adds a malloc to the
command path fails here, whatever the tests of behaviour say.
"""
import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FORBIDDEN = {
    "malloc", "calloc", "realloc", "free", "strdup", "strndup", "posix_memalign",
    "aligned_alloc", "mmap", "read", "write", "recv", "send",
}
# (fprintf is allowed: ASSERT prints file and line just before it aborts.)


@pytest.mark.parametrize("source", ["server/smtp_parse.c", "server/smtp_data.c"])
def test_parser_object_code_calls_no_allocator_and_no_io(source, tmp_path):
    obj = tmp_path / "x.o"
    subprocess.run(["cc", "-std=c11", "-O2", "-D_GNU_SOURCE", "-I", ROOT, "-c",
                    os.path.join(ROOT, source), "-o", str(obj)], check=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], check=True, capture_output=True,
                               text=True).stdout.split()
    called = {sym.split("@")[0] for sym in undefined if sym != "U"}
    assert called & FORBIDDEN == set(), "%s calls %s" % (source, sorted(called & FORBIDDEN))
    # It does call something (memchr at least): the check is looking at the right file.
    assert "memchr" in called
