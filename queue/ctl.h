/*
 * ctl — the ringmxctl protocol: the request grammar, what one shard answers, and how the
 * daemon merges the shards' answers into the one it sends back. No I/O; ctl_merge allocates
 * an index of the answers' lines, nothing else does.
 *
 * The wire (server/control.c, queue/ctl_main.c): the client connects to [server]
 * control_socket, writes one request line (CTL_REQ_MAX bytes at most, '\n' included) and reads
 * the answer until the daemon closes the connection. The daemon parses the line (ctl_parse),
 * asks every shard (delivery_ctl, on the shard's own thread), merges (ctl_merge) and answers.
 *
 * A request is words separated by spaces; a leading `--json` asks for JSON:
 *   [--json] queue
 *   [--json] list [domain D] [sender S]      (S: the whole address, any case; <> the null one)
 *   [--json] show QID                        (QID: 16 hex digits, as in the log)
 *   [--json] flush [DOMAIN]
 *   [--json] delete QID | delete --domain D
 *   [--json] hold | release | suspend DOMAIN | resume DOMAIN
 * Domains are read in any case, one trailing dot ignored. docs/ringmxctl.md has the answers.
 *
 * A shard's answer (delivery_ctl → ctl_merge; never on the wire) is lines, each tagged by its
 * first byte, payloads without '\n':
 *   E<text>    an error; the first one in any shard is the whole answer
 *   H<text>    text mode: the table's header (the first one is kept)
 *   R<text>    a table row: text, or one JSON object; rows of all shards are sorted together
 *   M<text>    show: the home shard's view of the message (text lines, or one JSON object)
 *   C k=v ...  counters (unsigned decimal): summed over the shards; `held` and `oldest_s` take
 *              the largest; `held` and `truncated` are booleans in JSON
 *
 * The merged answer: text is "error: TEXT\n", or [a held notice,] the header, the rows and a
 * counters line ("total: k=v ..." for queue and list, "VERB: k=v ..." for the actions); JSON is
 * {"error":"TEXT"} or one object per request (queue: held, domains[], total; list: jobs[],
 * total; show: message, jobs[]; the actions: command and the counters), then '\n'.
 *
 * Limits: CTL_REQ_MAX for a request, CTL_SHARD_ANSWER_MAX for one shard's answer (rows beyond
 * it are left out and counted as truncated=1), CTL_COUNTERS_MAX counter names.
 *
 * Failure: ctl_parse returns -EINVAL with a one-line reason in err. The writers never fail: what
 * does not fit is left out (ctl_buf.over, .cut) and the caller sizes its buffers from the
 * limits above.
 */
#ifndef RINGMX_CTL_H
#define RINGMX_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_REQ_MAX 4096		/* a request line, '\n' included */
#define CTL_SHARD_ANSWER_MAX (4u << 20) /* one shard's answer */
#define CTL_MERGE_EXTRA 4096		/* the merged answer: the shards' answers + this */
#define CTL_BUF_RESERVE 1024		/* room a shard keeps for its counters line */
#define CTL_DOMAIN_MAX 255
#define CTL_ADDR_MAX 1024
#define CTL_COUNTERS_MAX 16
#define CTL_TIMEOUT_MS 5000 /* the daemon waits this long for a request line, and to send */

enum ctl_tag {
	CTL_TAG_ERROR = 'E',
	CTL_TAG_HEADER = 'H',
	CTL_TAG_ROW = 'R',
	CTL_TAG_MESSAGE = 'M',
	CTL_TAG_COUNTERS = 'C',
};

enum ctl_verb {
	CTL_QUEUE = 1,
	CTL_LIST,
	CTL_SHOW,
	CTL_FLUSH,
	CTL_DELETE,
	CTL_HOLD,
	CTL_RELEASE,
	CTL_SUSPEND,
	CTL_RESUME,
};

struct ctl_req {
	enum ctl_verb verb;
	bool json;
	bool has_qid; /* show, delete QID */
	uint64_t qid;
	char domain[CTL_DOMAIN_MAX + 1]; /* lower case, no trailing dot; "" = every domain */
	bool has_sender;		 /* list sender S */
	char sender[CTL_ADDR_MAX + 1];	 /* "" = the null sender */
};

/* The commands, one per line, for "error:" answers and ringmxctl --help. */
extern const char ctl_usage[];

/* Parses one request line (len bytes, no '\n'). Returns 0, or -EINVAL with err filled (r->json
 * is set all the same when the line began with --json, so the error can be answered in kind). */
int ctl_parse(const char *line, size_t len, struct ctl_req *r, char *err, size_t err_len);

/* The verb's name ("queue", "flush", ...). */
const char *ctl_verb_name(enum ctl_verb v);

/* ---- a bounded writer ---- */

struct ctl_buf {
	char *p;
	size_t len, cap;
	size_t limit; /* rows end here: the rest is kept for the counters line */
	bool over;    /* a write did not fit (and was left out) */
	bool cut;     /* rows were left out */
};

void ctl_buf_init(struct ctl_buf *b, char *p, size_t cap);
void ctl_buf_put(struct ctl_buf *b, const char *s, size_t n);
void ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included; bytes that are not UTF-8 become U+FFFD. */
void ctl_buf_json(struct ctl_buf *b, const char *s, size_t n);
/* s for a text line: control bytes become '?'. */
void ctl_buf_text(struct ctl_buf *b, const char *s, size_t n);
/* A row: begin writes the tag and returns a mark; end writes the '\n' and keeps the row if it
 * fits under the limit, else removes it and sets cut (false). */
size_t ctl_buf_row_begin(struct ctl_buf *b, enum ctl_tag tag);
bool ctl_buf_row_end(struct ctl_buf *b, size_t mark);

/* A duration for a text column: "45s", "12m30s", "3h05m", "2d04h". */
void ctl_duration(char buf[16], uint64_t s);

/* ---- the daemon's side ---- */

/* The merged answer to r from the n shards' answers (ans[i], len[i] bytes). Writes at most cap
 * bytes (enough: the sum of len[] + CTL_MERGE_EXTRA) and returns how many. */
size_t ctl_merge(const struct ctl_req *r, const char *const *ans, const size_t *len, unsigned n,
		 char *out, size_t cap);
/* An error answer in the requested form: "error: MSG\n" or {"error":"MSG"}\n. */
size_t ctl_error(bool json, const char *msg, char *out, size_t cap);

#endif
