/*
 * Unit tests for queue/ctl: the request grammar (a table of good and bad lines), the bounded
 * writer (JSON strings, rows that do not fit), durations, and the merge of shard answers into
 * one text or JSON answer.
 */
#include "queue/ctl.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int
parse(const char *line, struct ctl_req *r, char *err)
{
	return ctl_parse(line, strlen(line), r, err, 256);
}

Test(ctl_parse, every_command_with_its_arguments_is_read)
{
	static const struct {
		const char *line;
		enum ctl_verb verb;
		bool json;
		const char *domain;
		const char *sender; /* NULL: none */
		uint64_t qid;	    /* 0: none */
	} ok[] = {
	    {"queue", CTL_QUEUE, false, "", NULL, 0},
	    {"--json queue", CTL_QUEUE, true, "", NULL, 0},
	    {"  list  ", CTL_LIST, false, "", NULL, 0},
	    {"list domain Example.ORG.", CTL_LIST, false, "example.org", NULL, 0},
	    {"list sender <A@B.c>", CTL_LIST, false, "", "A@B.c", 0},
	    {"list sender <> domain x.test", CTL_LIST, false, "x.test", "", 0},
	    {"--json\tlist sender a@b", CTL_LIST, true, "", "a@b", 0},
	    {"show 0123456789ABCDEF", CTL_SHOW, false, "", NULL, 0x0123456789abcdefull},
	    {"flush", CTL_FLUSH, false, "", NULL, 0},
	    {"flush [127.0.0.1]", CTL_FLUSH, false, "[127.0.0.1]", NULL, 0},
	    {"delete 00000000000000ff", CTL_DELETE, false, "", NULL, 0xff},
	    {"delete --domain a.test", CTL_DELETE, false, "a.test", NULL, 0},
	    {"hold", CTL_HOLD, false, "", NULL, 0},
	    {"release", CTL_RELEASE, false, "", NULL, 0},
	    {"suspend A.test", CTL_SUSPEND, false, "a.test", NULL, 0},
	    {"--json resume a.test", CTL_RESUME, true, "a.test", NULL, 0},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct ctl_req r;
		char err[256] = "";
		cr_assert_eq(parse(ok[i].line, &r, err), 0, "%s: %s", ok[i].line, err);
		cr_assert_eq(r.verb, ok[i].verb, "%s", ok[i].line);
		cr_assert_eq(r.json, ok[i].json, "%s", ok[i].line);
		cr_assert_str_eq(r.domain, ok[i].domain, "%s", ok[i].line);
		cr_assert_eq(r.has_sender, ok[i].sender != NULL, "%s", ok[i].line);
		if (ok[i].sender)
			cr_assert_str_eq(r.sender, ok[i].sender, "%s", ok[i].line);
		cr_assert_eq(r.has_qid, ok[i].qid != 0, "%s", ok[i].line);
		cr_assert_eq(r.qid, ok[i].qid, "%s", ok[i].line);
	}
}

Test(ctl_parse, bad_requests_are_refused_with_a_reason)
{
	static const struct {
		const char *line;
		const char *reason;
	} bad[] = {
	    {"", "no command"},
	    {"--json", "no command"},
	    {"queeu", "unknown command 'queeu'"},
	    {"queue now", "queue takes no arguments"},
	    {"hold all", "hold takes no arguments"},
	    {"show", "show takes one queue id"},
	    {"show 123", "not a queue id"},
	    {"show 0123456789abcdeg", "not a queue id"},
	    {"delete", "delete takes a queue id"},
	    {"delete --domain", "delete takes a queue id"},
	    {"delete --domain a b", "delete takes a queue id"},
	    {"suspend", "suspend takes one domain"},
	    {"resume a b", "resume takes one domain"},
	    {"flush a b", "flush takes at most one domain"},
	    {"flush user@a.test", "not a domain"},
	    {"flush .", "not a domain"},
	    {"list domain", "needs a value"},
	    {"list domain a domain b", "list takes [domain D] [sender S], each once"},
	    {"list color red", "list takes"},
	    {"queue\x01", "control bytes"},
	    {"list a b c d e f g h i", "too many words"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct ctl_req r;
		char err[256] = "";
		cr_assert_eq(parse(bad[i].line, &r, err), -EINVAL, "%s", bad[i].line);
		cr_assert(strstr(err, bad[i].reason), "'%s': '%s' lacks '%s'", bad[i].line, err,
			  bad[i].reason);
	}
}

Test(ctl_parse, a_bad_json_request_still_says_json_so_the_error_is_json)
{
	struct ctl_req r;
	char err[256];
	cr_assert_eq(parse("--json nonsense", &r, err), -EINVAL);
	cr_assert(r.json);
}

Test(ctl_parse, a_domain_of_255_bytes_is_taken_and_one_more_is_not)
{
	char line[400], err[256];
	struct ctl_req r;
	memset(line, 0, sizeof line);
	strcpy(line, "suspend ");
	memset(line + 8, 'a', 255);
	cr_assert_eq(parse(line, &r, err), 0, "%s", err);
	cr_assert_eq(strlen(r.domain), 255);
	line[8 + 255] = 'a';
	cr_assert_eq(parse(line, &r, err), -EINVAL);
}

Test(ctl_buf, json_strings_are_escaped_and_bad_utf8_replaced)
{
	char out[256];
	struct ctl_buf b;
	ctl_buf_init(&b, out, sizeof out);
	const char in[] = "a\"b\\c\n\x01 \xc3\xa9 \xff \xe2\x82";
	ctl_buf_json(&b, in, sizeof in - 1);
	cr_assert_not(b.over);
	cr_assert_eq(b.len,
		     strlen("\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd\""));
	cr_assert_eq(
	    memcmp(out, "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd\"", b.len), 0,
	    "%.*s", (int)b.len, out);
}

Test(ctl_buf, text_replaces_control_bytes)
{
	char out[16];
	struct ctl_buf b;
	ctl_buf_init(&b, out, sizeof out);
	ctl_buf_text(&b, "a\rb\x7f", 4);
	cr_assert_eq(b.len, 4);
	cr_assert_eq(memcmp(out, "a?b?", 4), 0);
}

Test(ctl_buf, a_row_that_does_not_fit_is_left_out_and_counted)
{
	char out[CTL_BUF_RESERVE + 64];
	struct ctl_buf b;
	ctl_buf_init(&b, out, sizeof out);
	size_t mark = ctl_buf_row_begin(&b, CTL_TAG_ROW);
	ctl_buf_printf(&b, "%s", "short");
	cr_assert(ctl_buf_row_end(&b, mark));
	cr_assert_eq(b.len, 7);
	mark = ctl_buf_row_begin(&b, CTL_TAG_ROW);
	for (int i = 0; i < 20; i++)
		ctl_buf_printf(&b, "%s", "0123456789");
	cr_assert_not(ctl_buf_row_end(&b, mark));
	cr_assert(b.cut);
	cr_assert_eq(b.len, 7);
	/* the counters line still fits in the reserve */
	ctl_buf_printf(&b, "C jobs=1 truncated=%d\n", b.cut);
	cr_assert_not(b.over);
}

Test(ctl_duration, picks_two_units)
{
	static const struct {
		uint64_t s;
		const char *text;
	} t[] = {{0, "0s"},	  {59, "59s"},	     {60, "1m00s"},    {3599, "59m59s"},
		 {3600, "1h00m"}, {86399, "23h59m"}, {86400, "1d00h"}, {90061, "1d01h"}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char buf[16];
		ctl_duration(buf, t[i].s);
		cr_assert_str_eq(buf, t[i].text);
	}
}

/* ---- merging ---- */

static const char *
merge(const char *line, const char *a, const char *b, char *out, size_t cap)
{
	struct ctl_req r;
	char err[256];
	cr_assert_eq(parse(line, &r, err), 0, "%s", err);
	const char *ans[2] = {a, b};
	size_t len[2] = {strlen(a), strlen(b)};
	size_t n = ctl_merge(&r, ans, len, 2, out, cap - 1);
	out[n] = '\0';
	return out;
}

Test(ctl_merge, table_rows_of_all_shards_go_under_one_header_sorted_with_summed_totals)
{
	char out[1024];
	merge("queue",
	      "Hdomain ready\nRz.test 1\nCdomains=1 ready=1 oldest_s=9 held=0 truncated=0\n",
	      "Hdomain ready\nRa.test 2\nRm.test 3\nCdomains=2 ready=5 oldest_s=4 held=0 "
	      "truncated=0\n",
	      out, sizeof out);
	cr_assert_str_eq(out, "domain ready\na.test 2\nm.test 3\nz.test 1\n"
			      "total: domains=3 ready=6 oldest_s=9\n");
}

Test(ctl_merge, a_held_delivery_is_said_first_and_json_has_held_true)
{
	char out[1024];
	merge("list", "Hh\nCjobs=0 held=1 truncated=0\n", "Hh\nCjobs=0 held=1 truncated=1\n", out,
	      sizeof out);
	cr_assert_str_eq(out, "delivery is held (ringmxctl release resumes it)\nh\n"
			      "total: jobs=0 (truncated)\n");
	merge("--json list", "R{\"qid\":\"2\"}\nCjobs=1 held=1 truncated=0\n",
	      "R{\"qid\":\"1\"}\nCjobs=1 held=1 truncated=0\n", out, sizeof out);
	cr_assert_str_eq(out, "{\"held\":true,\"jobs\":[{\"qid\":\"1\"},{\"qid\":\"2\"}],"
			      "\"total\":{\"jobs\":2,\"truncated\":false}}\n");
}

Test(ctl_merge, the_first_error_of_any_shard_is_the_answer)
{
	char out[256];
	merge("queue", "Hh\nCdomains=0\n", "Edelivery is disabled\n", out, sizeof out);
	cr_assert_str_eq(out, "error: delivery is disabled\n");
	merge("--json queue", "Eit \"broke\"\n", "Eother\n", out, sizeof out);
	cr_assert_str_eq(out, "{\"error\":\"it \\\"broke\\\"\"}\n");
}

Test(ctl_merge, show_takes_the_home_shards_message_and_every_shards_jobs)
{
	char out[1024];
	merge("show 0000000000000001", "Mqid: 1\nM  pending a@x\nHjobs header\nRjob x\nCjobs=1\n",
	      "Hjobs header\nRjob y\nCjobs=1\n", out, sizeof out);
	cr_assert_str_eq(out, "qid: 1\n  pending a@x\njobs:\njobs header\njob x\njob y\n");
	merge("--json show 0000000000000001", "Hh\nCjobs=0\n", "M{\"qid\":\"1\"}\nCjobs=0\n", out,
	      sizeof out);
	cr_assert_str_eq(out, "{\"message\":{\"qid\":\"1\"},\"jobs\":[]}\n");
}

Test(ctl_merge, show_of_a_message_no_shard_holds_is_an_error)
{
	char out[256];
	merge("show 00000000000000aa", "Hh\nCjobs=0\n", "Hh\nCjobs=0\n", out, sizeof out);
	cr_assert_str_eq(out, "error: no message 00000000000000aa in the queue\n");
}

Test(ctl_merge, actions_sum_their_counters)
{
	char out[256];
	merge("flush", "Cjobs=2 domains=1 backoffs_cleared=1\n",
	      "Cjobs=3 domains=2 backoffs_cleared=0\n", out, sizeof out);
	cr_assert_str_eq(out, "flush: jobs=5 domains=3 backoffs_cleared=1\n");
	merge("--json hold", "Cdomains=0 held=1\n", "Cdomains=0 held=1\n", out, sizeof out);
	cr_assert_str_eq(out, "{\"command\":\"hold\",\"domains\":0,\"held\":true}\n");
}

Test(ctl_merge, deleting_a_message_nothing_holds_is_an_error_but_a_domain_is_not)
{
	char out[256];
	merge("delete 00000000000000aa", "Cjobs=0 rcpts=0 busy=0\n", "Cjobs=0 rcpts=0 busy=0\n",
	      out, sizeof out);
	cr_assert_str_eq(out, "error: no message 00000000000000aa waiting in the queue\n");
	merge("delete --domain a.test", "Cjobs=0 rcpts=0 busy=0\n", "Cjobs=0 rcpts=0 busy=0\n", out,
	      sizeof out);
	cr_assert_str_eq(out, "delete: jobs=0 rcpts=0 busy=0\n");
}
