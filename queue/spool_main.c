/*
 * ringmx-spool — offline inspector of a spool directory, for operators and tests.
 *
 *   ringmx-spool [-d DIR] list     one logfmt line per record
 *   ringmx-spool [-d DIR] export   one JSON object per record, message in base64
 *   ringmx-spool [-d DIR] stats    the summary line only
 *
 * It only reads: segments are mapped read-only by spool_scan, so it is safe to run against a
 * copy or a stopped server's spool. Run against a live spool, the last record of a segment
 * being written may show as a truncated tail. Records go to stdout; the summary (except for
 * stats) and problems go to stderr, so stdout stays one record per line for scripts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "queue/spool_scan.h"

#define SPOOL_MAIN_DEFAULT_DIR "./var/spool"
/* Base64 chunk: a multiple of 3, so that only the last chunk of a message gets padding. */
#define SPOOL_MAIN_B64_CHUNK (3 * 4096)

static const struct {
	uint32_t bit;
	const char *name;
} spool_main_flags[] = {
    {SPOOL_F_8BITMIME, "8bitmime"},
    {SPOOL_F_SMTPUTF8, "smtputf8"},
    {SPOOL_F_BINARY, "binary"},
    {SPOOL_F_AUTH, "auth"},
};

static void
usage(FILE *f)
{
	fputs("usage: ringmx-spool [-d DIR] list|export|stats\n"
	      "Reads the segment files of a ringmx spool directory; never modifies them.\n"
	      "  -d DIR  spool directory (default " SPOOL_MAIN_DEFAULT_DIR ")\n"
	      "  -h      print this help\n"
	      "  list    one logfmt line per record on stdout, the summary on stderr\n"
	      "  export  one JSON object per record on stdout (message_b64: the message bytes),\n"
	      "          the summary on stderr\n"
	      "  stats   the summary line on stdout\n"
	      "Corrupt records and truncated tails are reported on stderr as warn: lines.\n"
	      "Exit status: 0 done, 1 directory unreadable or output failed, 2 usage error.\n",
	      f);
}

static const char *
segment_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/* logfmt: a value with a space, quote, '=', backslash or control byte goes in quotes. */
static bool
logfmt_needs_quotes(const struct spool_str *s)
{
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			return true;
	}
	return false;
}

/* Escapes so that an envelope string can never forge a field, a line or a terminal escape. */
static void
logfmt_put_escaped(FILE *f, const struct spool_str *s)
{
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			putc(c, f);
	}
}

static void
list_put_from(FILE *f, const struct spool_str *from)
{
	bool quote = logfmt_needs_quotes(from);

	fputs(quote ? "from=\"<" : "from=<", f);
	logfmt_put_escaped(f, from);
	fputs(quote ? ">\"" : ">", f);
}

static void
list_put_rcpts(FILE *f, const struct spool_record_view *rec)
{
	struct spool_str s;
	bool quote = false;
	size_t it = 0;

	while (spool_record_rcpt_next(rec, &it, &s))
		quote = quote || logfmt_needs_quotes(&s);
	fputs(quote ? "rcpts=\"" : "rcpts=", f);
	it = 0;
	for (bool first = true; spool_record_rcpt_next(rec, &it, &s); first = false) {
		if (!first)
			putc(',', f);
		logfmt_put_escaped(f, &s);
	}
	if (quote)
		putc('"', f);
}

static void
list_on_record(void *arg, const char *path, uint64_t offset, const struct spool_record_view *rec)
{
	FILE *f = arg;
	bool first = true;

	fprintf(f, "qid=%016llx segment=%s offset=%llu size=%u ", (unsigned long long)rec->qid,
		segment_basename(path), (unsigned long long)offset, rec->msg_len);
	list_put_from(f, &rec->from);
	fprintf(f, " nrcpt=%u ", rec->nrcpt);
	list_put_rcpts(f, rec);
	fprintf(f, " arrival_ms=%llu flags=", (unsigned long long)rec->arrival_ms);
	for (size_t i = 0; i < sizeof(spool_main_flags) / sizeof(spool_main_flags[0]); i++) {
		if (rec->flags & spool_main_flags[i].bit) {
			fprintf(f, "%s%s", first ? "" : ",", spool_main_flags[i].name);
			first = false;
		}
	}
	putc('\n', f);
}

/* Length of the well-formed UTF-8 sequence at p[0..n) (RFC 3629 table 4), 0 if there is none. */
static size_t
utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
		hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	}
	return len;
}

/*
 * Writes s as a JSON string (RFC 8259 section 7). JSON text must be UTF-8, and an envelope
 * string is whatever bytes the client sent, so each byte that is not part of a well-formed
 * sequence becomes U+FFFD; the message itself is exact, in base64.
 */
static void
json_put_string(FILE *f, const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;

	putc('"', f);
	for (size_t i = 0; i < n;) {
		size_t k = 1;

		if (u[i] == '"' || u[i] == '\\')
			fprintf(f, "\\%c", u[i]);
		else if (u[i] == '\n')
			fputs("\\n", f);
		else if (u[i] == '\r')
			fputs("\\r", f);
		else if (u[i] == '\t')
			fputs("\\t", f);
		else if (u[i] < 0x20)
			fprintf(f, "\\u%04x", u[i]);
		else if (u[i] < 0x80)
			putc(u[i], f);
		else if ((k = utf8_seq_len(u + i, n - i)) > 0)
			fwrite(u + i, 1, k, f);
		else
			fputs("\\ufffd", f);
		i += k > 0 ? k : 1;
	}
	putc('"', f);
}

/* EVP_EncodeBlock takes an int length; chunks keep a 2 GiB message within it. */
static void
json_put_base64(FILE *f, const char *p, size_t n)
{
	unsigned char out[4 * (SPOOL_MAIN_B64_CHUNK / 3) + 1];

	while (n > 0) {
		size_t k = n < SPOOL_MAIN_B64_CHUNK ? n : SPOOL_MAIN_B64_CHUNK;
		int w = EVP_EncodeBlock(out, (const unsigned char *)p, (int)k);

		fwrite(out, 1, (size_t)w, f);
		p += k;
		n -= k;
	}
}

static void
export_on_record(void *arg, const char *path, uint64_t offset, const struct spool_record_view *rec)
{
	FILE *f = arg;
	struct spool_str s;
	size_t it = 0;

	fprintf(f, "{\"qid\":\"%016llx\",\"segment\":", (unsigned long long)rec->qid);
	json_put_string(f, segment_basename(path), strlen(segment_basename(path)));
	fprintf(f, ",\"offset\":%llu,\"from\":", (unsigned long long)offset);
	json_put_string(f, rec->from.p, rec->from.len);
	fputs(",\"rcpts\":[", f);
	for (bool first = true; spool_record_rcpt_next(rec, &it, &s); first = false) {
		if (!first)
			putc(',', f);
		json_put_string(f, s.p, s.len);
	}
	fputs("],\"helo\":", f);
	json_put_string(f, rec->helo.p, rec->helo.len);
	fputs(",\"client\":", f);
	json_put_string(f, rec->client.p, rec->client.len);
	fprintf(f, ",\"flags\":%u,\"arrival_ms\":%llu,\"size\":%u,\"message_b64\":\"", rec->flags,
		(unsigned long long)rec->arrival_ms, rec->msg_len);
	json_put_base64(f, rec->msg, rec->msg_len);
	fputs("\"}\n", f);
}

static void
warn_on_problem(void *arg, const char *path, uint64_t offset, uint64_t skipped, const char *what)
{
	/* Flush first, so a warning lands after the records before it when both go to one file. */
	fflush(arg);
	fprintf(stderr, "warn: %s offset=%llu skipped=%llu: %s\n", path, (unsigned long long)offset,
		(unsigned long long)skipped, what);
}

static void
summary_put(FILE *f, const struct spool_scan_stats *st)
{
	fprintf(f,
		"segments=%llu records=%llu corrupt_regions=%llu truncated_tails=%llu "
		"skipped_bytes=%llu\n",
		(unsigned long long)st->segments, (unsigned long long)st->records,
		(unsigned long long)st->corrupt_regions, (unsigned long long)st->truncated_tails,
		(unsigned long long)st->skipped_bytes);
}

static const struct spool_main_cmd {
	const char *name;
	void (*on_record)(void *arg, const char *path, uint64_t offset,
			  const struct spool_record_view *rec);
	bool summary_on_stdout;
} spool_main_cmds[] = {
    {"list", list_on_record, false},
    {"export", export_on_record, false},
    {"stats", NULL, true},
};

static int
spool_main_run(const char *dir, const struct spool_main_cmd *cmd)
{
	struct spool_scan_ops ops = {
	    .on_record = cmd->on_record,
	    .on_problem = warn_on_problem,
	    .arg = stdout,
	};
	struct spool_scan_stats st;
	int r = spool_scan_dir(dir, &ops, &st);

	if (r < 0) {
		fprintf(stderr, "ringmx-spool: cannot read spool directory %s: %s\n", dir,
			strerror(-r));
		return 1;
	}
	fflush(stdout);
	summary_put(cmd->summary_on_stdout ? stdout : stderr, &st);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "ringmx-spool: writing to stdout failed: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dir = SPOOL_MAIN_DEFAULT_DIR;
	int c;

	while ((c = getopt(argc, argv, "d:h")) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(spool_main_cmds) / sizeof(spool_main_cmds[0]); i++) {
		if (strcmp(argv[optind], spool_main_cmds[i].name) == 0)
			return spool_main_run(dir, &spool_main_cmds[i]);
	}
	fprintf(stderr, "ringmx-spool: unknown command: %s\n", argv[optind]);
	usage(stderr);
	return 2;
}
