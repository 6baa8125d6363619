/*
 * spool_record — encoder and validating decoder of spool records (layout in spool_record.h).
 *
 * Integers are stored and loaded a byte at a time: the format is little-endian on every host,
 * and a record at any offset of a mapped segment can be read without alignment concerns.
 * The decoder trusts nothing it reads: every length is checked against the bytes that are
 * there before it is used, because a segment may end in a torn write or hold a flipped bit.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "queue/assert.h"
#include "queue/crc32c.h"
#include "queue/spool_record.h"

/* Field offsets, as in the header comment. */
enum {
	OFF_MAGIC = 0,
	OFF_CRC = 4,
	OFF_TOTAL_LEN = 8,
	OFF_VERSION = 12,
	OFF_TYPE = 14,
	OFF_QID = 16,
	OFF_ARRIVAL = 24,
	OFF_FLAGS = 32,
	OFF_MSG_OFF = 36,
	OFF_MSG_LEN = 40,
	OFF_NRCPT = 44,
};

#define SPOOL_F_KNOWN (SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8 | SPOOL_F_BINARY | SPOOL_F_AUTH)
/* The envelope holds at least the three u16 lengths of helo, client and from. */
#define SPOOL_ENVELOPE_MIN 6u

_Static_assert(OFF_NRCPT + 4 == SPOOL_RECORD_HEADER_SIZE, "header layout");
_Static_assert(SPOOL_STR_MAX <= UINT16_MAX, "envelope string lengths are stored as u16");
_Static_assert(SPOOL_RECORD_MAX <= UINT32_MAX, "total_len is stored as u32");
_Static_assert(SPOOL_RECORD_MAX <= LONG_MAX, "decode returns the length as a long");
/* The largest envelope the writer accepts still fits in a record. */
_Static_assert(SPOOL_RECORD_HEADER_SIZE + 3 * (2 + (uint64_t)SPOOL_STR_MAX) +
		       (uint64_t)SPOOL_RCPT_MAX * (2 + SPOOL_STR_MAX) <
		   SPOOL_RECORD_MAX,
	       "envelope limits");

static inline void
put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static inline void
put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void
put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint16_t
get_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
get_le64(const unsigned char *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void
spool_record_check_str(const struct spool_str *s)
{
	ASSERT(s->len <= SPOOL_STR_MAX);
	ASSERT(s->p != NULL || s->len == 0);
}

size_t
spool_record_envelope_size(const struct spool_envelope *env)
{
	size_t size = SPOOL_RECORD_HEADER_SIZE + SPOOL_ENVELOPE_MIN;

	ASSERT(env != NULL);
	ASSERT(env->nrcpt <= SPOOL_RCPT_MAX);
	ASSERT(env->rcpts != NULL || env->nrcpt == 0);
	ASSERT((env->flags & ~(uint32_t)SPOOL_F_KNOWN) == 0);
	spool_record_check_str(&env->helo);
	spool_record_check_str(&env->client);
	spool_record_check_str(&env->from);
	size += env->helo.len + env->client.len + env->from.len;
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		spool_record_check_str(&env->rcpts[i]);
		size += 2 + env->rcpts[i].len;
	}
	return size;
}

static unsigned char *
spool_record_put_str(unsigned char *p, const struct spool_str *s)
{
	put_le16(p, (uint16_t)s->len);
	if (s->len > 0)
		memcpy(p + 2, s->p, s->len);
	return p + 2 + s->len;
}

size_t
spool_record_begin(char *buf, size_t cap, const struct spool_envelope *env)
{
	size_t size = spool_record_envelope_size(env); /* asserts the envelope limits */
	unsigned char *p = (unsigned char *)buf;

	ASSERT(buf != NULL);
	ASSERT(cap >= size);
	put_le32(p + OFF_MAGIC, SPOOL_RECORD_MAGIC);
	put_le32(p + OFF_CRC, 0);	/* patched by spool_record_finish() */
	put_le32(p + OFF_TOTAL_LEN, 0); /* likewise */
	put_le16(p + OFF_VERSION, SPOOL_RECORD_VERSION);
	put_le16(p + OFF_TYPE, SPOOL_RECORD_MESSAGE);
	put_le64(p + OFF_QID, env->qid);
	put_le64(p + OFF_ARRIVAL, env->arrival_ms);
	put_le32(p + OFF_FLAGS, env->flags);
	put_le32(p + OFF_MSG_OFF, (uint32_t)size);
	put_le32(p + OFF_MSG_LEN, 0);
	put_le32(p + OFF_NRCPT, env->nrcpt);
	p += SPOOL_RECORD_HEADER_SIZE;
	p = spool_record_put_str(p, &env->helo);
	p = spool_record_put_str(p, &env->client);
	p = spool_record_put_str(p, &env->from);
	for (uint32_t i = 0; i < env->nrcpt; i++)
		p = spool_record_put_str(p, &env->rcpts[i]);
	ASSERT(p == (unsigned char *)buf + size);
	return size;
}

void
spool_record_finish(char *buf, size_t total_len)
{
	unsigned char *p = (unsigned char *)buf;
	uint32_t msg_off;

	ASSERT(buf != NULL);
	ASSERT(total_len <= SPOOL_RECORD_MAX);
	ASSERT(get_le32(p + OFF_MAGIC) == SPOOL_RECORD_MAGIC);
	msg_off = get_le32(p + OFF_MSG_OFF);
	ASSERT(msg_off >= SPOOL_RECORD_HEADER_SIZE + SPOOL_ENVELOPE_MIN);
	ASSERT(total_len >= msg_off);
	put_le32(p + OFF_TOTAL_LEN, (uint32_t)total_len);
	put_le32(p + OFF_MSG_LEN, (uint32_t)(total_len - msg_off));
	put_le32(p + OFF_CRC, crc32c(0, p + OFF_TOTAL_LEN, total_len - OFF_TOTAL_LEN));
}

/*
 * Checks the header fields present in p[0..len) (len >= 8, so the magic is there).
 * Returns -EBADMSG when one is impossible, 0 when all those present are plausible. Judging
 * a partial header early lets the scanner reject a stray "RMX1" in message bytes without
 * waiting for, or hashing, the megabytes its length field claims.
 */
static long
spool_record_check_header(const unsigned char *p, size_t len)
{
	uint32_t total, msg_off, nrcpt;

	if (get_le32(p + OFF_MAGIC) != SPOOL_RECORD_MAGIC)
		return -EBADMSG;
	if (len < OFF_VERSION)
		return 0;
	total = get_le32(p + OFF_TOTAL_LEN);
	if (total < SPOOL_RECORD_HEADER_SIZE + SPOOL_ENVELOPE_MIN || total > SPOOL_RECORD_MAX)
		return -EBADMSG;
	if (len < OFF_QID)
		return 0;
	if (get_le16(p + OFF_VERSION) != SPOOL_RECORD_VERSION ||
	    get_le16(p + OFF_TYPE) != SPOOL_RECORD_MESSAGE)
		return -EBADMSG;
	if (len < SPOOL_RECORD_HEADER_SIZE)
		return 0;
	/* The writer never sets a flag this version does not know; one set is a flipped bit. */
	if ((get_le32(p + OFF_FLAGS) & ~(uint32_t)SPOOL_F_KNOWN) != 0)
		return -EBADMSG;
	nrcpt = get_le32(p + OFF_NRCPT);
	msg_off = get_le32(p + OFF_MSG_OFF);
	if (nrcpt > SPOOL_RCPT_MAX)
		return -EBADMSG;
	/* 64-bit sums: none of these can wrap, whatever the fields hold. */
	if ((uint64_t)msg_off < SPOOL_RECORD_HEADER_SIZE + SPOOL_ENVELOPE_MIN + 2 * (uint64_t)nrcpt)
		return -EBADMSG;
	if ((uint64_t)msg_off + get_le32(p + OFF_MSG_LEN) != total) /* so msg_off <= total */
		return -EBADMSG;
	return 0;
}

/* Takes one u16-prefixed string from p[*off..end); false when it does not fit there. */
static bool
spool_record_take_str(const unsigned char *p, size_t *off, size_t end, struct spool_str *out)
{
	size_t n;

	ASSERT(*off <= end);
	if (end - *off < 2)
		return false;
	n = get_le16(p + *off);
	if (n > SPOOL_STR_MAX || end - *off - 2 < n)
		return false;
	out->p = (const char *)p + *off + 2;
	out->len = n;
	*off += 2 + n;
	return true;
}

/*
 * Parses the envelope of a record whose header and CRC are valid. The envelope must end
 * exactly where the message begins: the writer leaves no gap, and spool_record_rcpt_next()
 * relies on it to know where the recipients end.
 */
static long
spool_record_parse_envelope(const unsigned char *p, uint32_t total, struct spool_record_view *out)
{
	struct spool_record_view v;
	size_t off = SPOOL_RECORD_HEADER_SIZE;
	size_t end = get_le32(p + OFF_MSG_OFF);
	struct spool_str s;

	v.nrcpt = get_le32(p + OFF_NRCPT);
	if (!spool_record_take_str(p, &off, end, &v.helo) ||
	    !spool_record_take_str(p, &off, end, &v.client) ||
	    !spool_record_take_str(p, &off, end, &v.from))
		return -EBADMSG;
	v.rcpt_area = (const char *)p + off;
	for (uint32_t i = 0; i < v.nrcpt; i++) {
		if (!spool_record_take_str(p, &off, end, &s))
			return -EBADMSG;
	}
	if (off != end)
		return -EBADMSG;
	v.qid = get_le64(p + OFF_QID);
	v.arrival_ms = get_le64(p + OFF_ARRIVAL);
	v.flags = get_le32(p + OFF_FLAGS);
	v.total_len = total;
	v.msg = (const char *)p + end;
	v.msg_len = get_le32(p + OFF_MSG_LEN);
	ASSERT(end + v.msg_len == total);
	*out = v;
	return (long)total;
}

long
spool_record_decode(const char *buf, size_t len, struct spool_record_view *out)
{
	const unsigned char *p = (const unsigned char *)buf;
	uint32_t total;
	long r;

	ASSERT(out != NULL);
	ASSERT(buf != NULL || len == 0);
	if (len < OFF_TOTAL_LEN)
		return 0;
	r = spool_record_check_header(p, len);
	if (r < 0)
		return r;
	if (len < SPOOL_RECORD_HEADER_SIZE)
		return 0;
	total = get_le32(p + OFF_TOTAL_LEN);
	if (total > len)
		return 0;
	if (crc32c(0, p + OFF_TOTAL_LEN, total - OFF_TOTAL_LEN) != get_le32(p + OFF_CRC))
		return -EBADMSG;
	r = spool_record_parse_envelope(p, total, out);
	if (r > 0)
		out->base = buf;
	return r;
}

bool
spool_record_rcpt_next(const struct spool_record_view *v, size_t *off, struct spool_str *out)
{
	const unsigned char *area;
	size_t end, n;

	ASSERT(v != NULL && off != NULL && out != NULL);
	ASSERT(v->rcpt_area != NULL && v->msg >= v->rcpt_area);
	/* The decoder guarantees that the recipients end where the message begins. */
	area = (const unsigned char *)v->rcpt_area;
	end = (size_t)(v->msg - v->rcpt_area);
	if (*off == end)
		return false;
	ASSERT(*off < end && end - *off >= 2);
	n = get_le16(area + *off);
	ASSERT(n <= SPOOL_STR_MAX && end - *off - 2 >= n);
	out->p = (const char *)area + *off + 2;
	out->len = n;
	*off += 2 + n;
	return true;
}
