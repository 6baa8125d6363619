/*
 * spool_record — the on-disk record codec of the log-structured spool (pure: no I/O).
 *
 * A segment file is a sequence of records. A record is a fixed little-endian header, the
 * envelope, and the message bytes exactly as they will be delivered (Received: header
 * prepended, CRLF line ends, dot-stuffing removed). A CRC32C over everything after the
 * header's crc field protects it, so a torn or corrupt tail is detected on replay.
 *
 * Layout (all integers little-endian):
 *   0  u32 magic "RMX1" (SPOOL_RECORD_MAGIC)
 *   4  u32 crc32c of bytes [8, total_len)
 *   8  u32 total_len (header + envelope + message)
 *   12 u16 version (1)   14 u16 type (SPOOL_RECORD_MESSAGE)
 *   16 u64 qid           24 u64 arrival time, ms since the epoch
 *   32 u32 flags (SPOOL_F_*)   36 u32 message offset (from record start)
 *   40 u32 message length      44 u32 recipient count
 *   48 envelope: u16 len + bytes for helo, client, from, then for each recipient
 *   then the message bytes at the message offset
 *
 * Usage (writing, in the session's one growing buffer, so message bytes are copied once):
 *   size_t off = spool_record_begin(buf, cap, &env);   // header + envelope
 *   ... append message bytes at buf + off ...
 *   spool_record_finish(buf, off + msg_len);           // patches lengths and the CRC
 *
 * Limits: each envelope string at most SPOOL_STR_MAX bytes, at most SPOOL_RCPT_MAX
 * recipients, a record at most SPOOL_RECORD_MAX bytes.
 *
 * Failure: spool_record_decode() returns 0 for "not enough bytes" (a truncated tail) and
 * -EBADMSG for a record that is corrupt (bad magic, bad CRC, lengths out of bounds).
 */
#ifndef RINGMX_SPOOL_RECORD_H
#define RINGMX_SPOOL_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define SPOOL_RECORD_MAGIC 0x31584d52u /* "RMX1" read as little-endian u32 */
#define SPOOL_RECORD_VERSION 1
#define SPOOL_RECORD_MESSAGE 1
#define SPOOL_RECORD_HEADER_SIZE 48
#define SPOOL_STR_MAX 4096
#define SPOOL_RCPT_MAX 100000
#define SPOOL_RECORD_MAX ((uint64_t)1 << 31)

enum spool_flag {
	SPOOL_F_8BITMIME = 1u << 0,
	SPOOL_F_SMTPUTF8 = 1u << 1,
	SPOOL_F_BINARY = 1u << 2, /* came by BDAT: bytes are as sent, may hold bare CR/LF */
	SPOOL_F_AUTH = 1u << 3,	  /* the client had authenticated (SMTP AUTH, RFC 4954) */
};

struct spool_str {
	const char *p;
	size_t len;
};

/* What the writer passes in: recipients as an array of strings. */
struct spool_envelope {
	uint64_t qid;
	uint64_t arrival_ms;
	uint32_t flags;
	struct spool_str helo;
	struct spool_str client;
	struct spool_str from; /* empty for the null sender <> */
	const struct spool_str *rcpts;
	uint32_t nrcpt;
};

/* What the reader gets back: slices into the decoded buffer. */
struct spool_record_view {
	const char *base; /* the record's first byte */
	uint64_t qid;
	uint64_t arrival_ms;
	uint32_t flags;
	uint32_t total_len;
	struct spool_str helo, client, from;
	uint32_t nrcpt;
	const char *rcpt_area; /* walk with spool_record_rcpt_next() */
	const char *msg;
	uint32_t msg_len;
};

/* Bytes spool_record_begin() will write for this envelope (header + envelope). */
size_t spool_record_envelope_size(const struct spool_envelope *env);

/*
 * Writes header and envelope at buf (cap bytes, at least spool_record_envelope_size()).
 * Returns the offset where the message bytes go.
 */
size_t spool_record_begin(char *buf, size_t cap, const struct spool_envelope *env);

/* Patches total length, message length and CRC once the message is in place. */
void spool_record_finish(char *buf, size_t total_len);

/*
 * Decodes the record at buf[0..len). Returns its total length (> 0) with *out filled,
 * 0 when buf holds only part of a record (truncated), -EBADMSG when it is corrupt.
 */
long spool_record_decode(const char *buf, size_t len, struct spool_record_view *out);

/* Iterates recipients: *off starts at 0; returns false after the last one. */
bool spool_record_rcpt_next(const struct spool_record_view *v, size_t *off, struct spool_str *out);

#endif
