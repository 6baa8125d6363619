/*
 * smtp_data — the pure DATA scanner; see smtp_data.h for the contract.
 *
 * The common path is per vector, not per line or byte: data_run() copies 16 bytes at a time
 * for as long as they hold only ordinary CRLF lines (no line-start '.', no bare CR or LF).
 * Where it stops, the path is per line: memchr finds the next LF, one fused copy loop moves
 * the line body to `out` while noting CR, NUL and 8-bit bytes 16 at a time, and the byte
 * before the LF says whether it was a real CRLF. A small state machine runs only at line
 * starts and at buffer cuts, so feeding one byte at a time gives the same output.
 *
 * RFC 5321 4.5.2: a line whose first character is '.' has that '.' deleted, and the line "."
 * (i.e. CRLF "." CRLF) ends the data. Only CRLF ends a line (2.3.8), so a '.' after a bare LF
 * or a bare CR is ordinary text and is neither deleted nor an end of DATA; a '.' at a real line
 * start followed by a bare LF or CR is deleted like any other and does not end DATA either.
 *
 * Every line-start '.' is dropped on sight, so the only byte ever held back across calls is
 * the CR of a line-start ".\r" (it vanishes if an LF follows). Output per call is therefore at
 * most len + 1 <= len + SMTP_DATA_HOLD_MAX bytes.
 */
#include "server/smtp_data.h"

#include <stdint.h>
#include <string.h>

#include "server/assert.h"

enum data_state {
	DATA_BOL = 0, /* at a line start: start of DATA or just after CRLF */
	DATA_MID,     /* inside a line, the previous byte was not a CR */
	DATA_CR,      /* inside a line, the previous byte was a CR (already written) */
	DATA_DOT,     /* a line-start '.' was consumed (and dropped) */
	DATA_DOT_CR,  /* a line-start ".\r" was consumed; the CR is held back */
	DATA_DONE,    /* ".\r\n" at a line start was consumed */
};

_Static_assert(SMTP_DATA_HOLD_MAX >= 1, "the CR of a line-start \".\\r\" is held back");

/* 16-byte vectors: SSE2 on x86-64, NEON on arm64, plain scalar code elsewhere (GCC, Clang). */
typedef unsigned char data_vec __attribute__((vector_size(16)));

/* Flags for the bytes of v that are a CR, a NUL or >= 0x80. */
static inline uint32_t
data_vec_flags(data_vec cr, data_vec nul, data_vec any)
{
	uint64_t w[2];
	uint32_t flags = 0;

	memcpy(w, &cr, sizeof(w));
	if (w[0] | w[1])
		flags |= SMTP_DATA_BARE_CR;
	memcpy(w, &nul, sizeof(w));
	if (w[0] | w[1])
		flags |= SMTP_DATA_NUL;
	memcpy(w, &any, sizeof(w));
	if ((w[0] | w[1]) & 0x8080808080808080ull)
		flags |= SMTP_DATA_8BIT;
	return flags;
}

/* data_copy_scan() for fewer bytes than a vector. */
static uint32_t
data_copy_scan_short(char *dst, const char *src, size_t n)
{
	uint32_t flags = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (char)c;
		flags |= c == '\r' ? SMTP_DATA_BARE_CR : 0;
		flags |= c == '\0' ? SMTP_DATA_NUL : 0;
		flags |= c >= 0x80 ? SMTP_DATA_8BIT : 0;
	}
	return flags;
}

/*
 * Copies n bytes from src to dst (not overlapping) and returns SMTP_DATA_BARE_CR if any of them
 * is a CR, plus SMTP_DATA_NUL and SMTP_DATA_8BIT. The caller passes only bytes in which a CR
 * cannot be part of a CRLF. Copying and checking in one pass keeps the flags exact at no cost:
 * measured as fast as memchr('\r') + memcpy, which would report neither NUL nor 8-bit.
 */
static uint32_t
data_copy_scan(char *dst, const char *src, size_t n)
{
	data_vec v, w, cr = {0}, nul = {0}, any = {0};
	size_t i;

	if (n < sizeof(v))
		return data_copy_scan_short(dst, src, n);
	for (i = 0; i + 2 * sizeof(v) <= n; i += 2 * sizeof(v)) {
		memcpy(&v, src + i, sizeof(v));
		memcpy(&w, src + i + sizeof(v), sizeof(w));
		memcpy(dst + i, &v, sizeof(v));
		memcpy(dst + i + sizeof(v), &w, sizeof(w));
		cr |= (data_vec)(v == '\r') | (data_vec)(w == '\r');
		nul |= (data_vec)(v == 0) | (data_vec)(w == 0);
		any |= v | w;
	}
	/* At most two more vectors; the last one may overlap bytes already done, never n. */
	for (; i < n; i += sizeof(v)) {
		if (i + sizeof(v) > n)
			i = n - sizeof(v);
		memcpy(&v, src + i, sizeof(v));
		memcpy(dst + i, &v, sizeof(v));
		cr |= (data_vec)(v == '\r');
		nul |= (data_vec)(v == 0);
		any |= v;
	}
	return data_vec_flags(cr, nul, any);
}

/*
 * Handles input from p, at a point where the previous byte is known not to be a pending CR
 * (state DATA_MID): copies up to and including the next LF, or to the end of the input.
 * Returns where it stopped and sets *state to DATA_BOL (after CRLF), DATA_MID (after a bare LF
 * or mid-line at the end) or DATA_CR (the input ended in a CR).
 */
static const char *
data_line(const char *p, const char *end, char **o, uint32_t *state, uint32_t *flags)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	const char *stop = lf != NULL ? lf : end;
	size_t n = (size_t)(stop - p);
	bool cr_last = n > 0 && stop[-1] == '\r';

	/* Any CR before the last byte is followed by a non-LF: it is bare. */
	*flags |= data_copy_scan(*o, p, n - cr_last);
	*o += n - cr_last;
	if (cr_last)
		*(*o)++ = '\r';
	if (lf == NULL) {
		*state = cr_last ? DATA_CR : DATA_MID;
		return end;
	}
	if (!cr_last)
		*flags |= SMTP_DATA_BARE_LF;
	*(*o)++ = '\n';
	*state = cr_last ? DATA_BOL : DATA_MID;
	return lf + 1;
}

/*
 * The bulk path, for the common case of many ordinary CRLF lines: from p, at a point where the
 * previous byte is not a pending CR (state DATA_MID), copies whole vectors in which every
 * CR is followed by an LF, every LF is preceded by a CR and no LF is followed by a '.', so no
 * byte in them needs the state machine: no line-start dot to delete, no terminator, no bare
 * CR or LF. Looking one and two bytes ahead of the vector at q needs q + 18 bytes of input.
 * Stops at the first vector holding anything else (or near the end of the input) and leaves
 * the rest to data_line(); returns p when it copied nothing. The state afterwards follows from
 * the last byte copied: after a CR, DATA_CR (its LF is next), after an LF, DATA_BOL, else
 * DATA_MID.
 */
static const char *
data_run(const char *p, const char *end, char **o, uint32_t *state, uint32_t *flags)
{
	data_vec v, v1, v2, nul = {0}, any = {0};
	const char *q = p;

	if (p < end && *p == '\n')
		return p; /* an LF right after a non-CR: bare, data_line() flags it */
	while ((size_t)(end - q) >= sizeof(v) + 2) {
		memcpy(&v, q, sizeof(v));
		memcpy(&v1, q + 1, sizeof(v1));
		memcpy(&v2, q + 2, sizeof(v2));
		/* Byte k of these masks speaks of q[k] (CR) and q[k + 1] (LF): a CR not followed
		 * by an LF, an LF not preceded by a CR, an LF followed by a '.'. */
		data_vec cr = (data_vec)(v == '\r'), lf1 = (data_vec)(v1 == '\n');
		data_vec odd = (cr ^ lf1) | (lf1 & (data_vec)(v2 == '.'));
		uint64_t w[2];
		memcpy(w, &odd, sizeof(w));
		if (w[0] | w[1])
			break;
		memcpy(*o, &v, sizeof(v));
		*o += sizeof(v);
		nul |= (data_vec)(v == 0);
		any |= v;
		q += sizeof(v);
	}
	if (q == p)
		return p;
	*flags |= data_vec_flags((data_vec){0}, nul, any);
	*state = q[-1] == '\r' ? DATA_CR : q[-1] == '\n' ? DATA_BOL : DATA_MID;
	return q;
}

/*
 * Resolves the state left at a line start or at a cut, consuming at most the byte at *p.
 * Returns true when the byte still has to go through data_run() or data_line() (state is then
 * DATA_MID).
 */
static bool
data_edge(const char **p, char **o, uint32_t *state, uint32_t *flags)
{
	char c = **p;

	switch (*state) {
	case DATA_BOL:
		if (c != '.')
			break;
		(*p)++; /* RFC 5321 4.5.2: delete the first '.' of a line */
		*state = DATA_DOT;
		return false;
	case DATA_DOT:
		if (c != '\r')
			break;
		(*p)++;
		*state = DATA_DOT_CR;
		return false;
	case DATA_DOT_CR:
		if (c == '\n') {
			(*p)++; /* CRLF "." CRLF: the end of the mail data */
			*state = DATA_DONE;
			return false;
		}
		*(*o)++ = '\r';
		*flags |= SMTP_DATA_BARE_CR;
		break;
	case DATA_CR:
		if (c == '\n') {
			*(*o)++ = '\n';
			(*p)++;
			*state = DATA_BOL;
			return false;
		}
		*flags |= SMTP_DATA_BARE_CR;
		break;
	case DATA_MID:
		break;
	default:
		ASSERT(!"smtp_data_scan state out of range");
	}
	*state = DATA_MID;
	return true;
}

void
smtp_data_scan_init(struct smtp_data_scan *scan)
{
	ASSERT(scan != NULL);
	memset(scan, 0, sizeof(*scan));
	scan->state = DATA_BOL;
}

size_t
smtp_data_scan_feed(struct smtp_data_scan *scan, const char *in, size_t len, char *out,
		    size_t *out_len)
{
	const char *p = in, *end = in + len;
	char *o = out;
	uint32_t state, flags = 0;

	ASSERT(scan != NULL && out_len != NULL && (in != NULL || len == 0) && out != NULL);
	state = scan->state;
	ASSERT(state <= DATA_DONE && (state == DATA_DONE) == scan->done);
	/* out must not overlap in: a held-back CR is written before in[0] is read. */
	ASSERT((uintptr_t)out + len + SMTP_DATA_HOLD_MAX <= (uintptr_t)in ||
	       (uintptr_t)in + len <= (uintptr_t)out || len == 0);
	if (scan->done)
		return 0;
	while (p < end && state != DATA_DONE) {
		if (!data_edge(&p, &o, &state, &flags))
			continue;
		const char *q = data_run(p, end, &o, &state, &flags);
		p = q != p ? q : data_line(p, end, &o, &state, &flags);
	}
	ASSERT((size_t)(o - out) <= (size_t)(p - in) + 1);
	scan->state = state;
	scan->done = state == DATA_DONE;
	scan->flags |= flags;
	scan->in_bytes += (uint64_t)(p - in);
	scan->out_bytes += (uint64_t)(o - out);
	*out_len += (size_t)(o - out);
	return (size_t)(p - in);
}
