/*
 * body_encode — turns stored message bytes into what the outbound client sends after DATA
 * (RFC 5321 4.5.2, 4.1.1.4) (pure: no I/O, no allocation).
 *
 * The encoding:
 *   - every line end becomes CRLF: CRLF stays, and a bare LF or a bare CR (one not part of a
 *     CRLF pair) becomes CRLF, so no bare CR or LF ever leaves in DATA, where a server that
 *     reads line ends differently could find a message end we did not send ("SMTP smuggling");
 *     "\r\r\n" is a bare CR then a CRLF: two line ends;
 *   - a line that starts with '.' gets one more '.' (transparency, RFC 5321 4.5.2), a line
 *     being what follows the message start or any of the line ends above;
 *   - no line on the wire is longer than BODY_LINE_MAX (998) octets before its CRLF, the
 *     limit of RFC 5321 4.5.3.1.6: a longer one is broken by CRLF SPACE, as Postfix does
 *     (smtp_line_length_limit); in a header that is a folded line (RFC 5322 2.2.3),
 *     elsewhere a space more, and a receiver that refuses long lines gets the message. The
 *     RFC does not count the dot added for transparency; we do, for receivers that count it;
 *   - a CRLF is added when the message does not end with a line end;
 *   - the terminator ".\r\n" follows. An empty message gives just ".\r\n".
 * So the output holds "\r\n.\r\n" only as its last five bytes (or is ".\r\n" itself).
 *
 * Messages received by DATA are stored with CRLF line ends and are only dot-stuffed; one
 * received by BDAT (SPOOL_F_BINARY) may hold bare CR/LF, which DATA has to normalize
 * (body_has_bare_newline() tells; BDAT to a CHUNKING server can send it as is).
 *
 * Usage:
 *   size_t need = body_encode_data_size(msg, len);
 *   char *out = ...need bytes...;
 *   size_t n = body_encode_data(msg, len, out);      // n == need
 *
 * Limits: len at most BODY_ENCODE_LEN_MAX (asserted); the output is at most 2 * len + 5 bytes.
 * Both functions scan with memchr, reading msg[0..len) and nothing past it.
 *
 * Failure: none; the functions cannot fail for a len within the limit.
 */
#ifndef RINGMX_BODY_ENCODE_H
#define RINGMX_BODY_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BODY_ENCODE_LEN_MAX (SIZE_MAX / 2 - 8)
/* Octets of a line sent in DATA, before its CRLF, a stuffed '.' included. */
#define BODY_LINE_MAX 998

/* Bytes body_encode_data() writes for msg[0..len) (msg may be NULL when len is 0). */
size_t body_encode_data_size(const char *msg, size_t len);

/*
 * Writes the DATA form of msg[0..len) to out, which must hold body_encode_data_size() bytes;
 * returns the bytes written (equal to that size). msg and out must not overlap.
 */
size_t body_encode_data(const char *msg, size_t len, char *out);

/* True when msg[0..len) holds a CR not followed by LF or an LF not preceded by CR. */
bool body_has_bare_newline(const char *msg, size_t len);

#endif
