/*
 * maildir — local delivery of one message into a Maildir (https://cr.yp.to/proto/maildir.html).
 *
 * maildir_deliver() does synchronous file I/O and BLOCKS the calling thread until the message
 * is on disk (two fsyncs): call it from a shard thread only where a stall of a few ms per
 * message is acceptable, or from a thread set aside for local delivery.
 *
 * Usage:
 *   struct maildir_params p = {.root = "./var/mail", .local = {"Bob", 3},
 *                              .sender = {"alice@example.com", 17}, .rcpt = {"Bob@mx.test", 11},
 *                              .msg = msg, .msg_len = len, .host = "mx.test",
 *                              .qid = "0123456789abcdef"};
 *   char err[256];
 *   int r = maildir_deliver(&p, err, sizeof err);
 *   // 0: delivered; -EINVAL: fail the recipient (5.1.3); other < 0: defer (4.x.x)
 *
 * Mailbox names (maildir_name()): the local part is the directory name under root, with ASCII
 * letters lower-cased (Bob and bob share a mailbox) and every other byte kept as it is (8-bit
 * bytes of an SMTPUTF8 local part are not case-folded). Nothing is rewritten into something
 * else, so two local parts that differ by more than ASCII case never share a mailbox. Refused
 * with -EINVAL: an empty name, more than MAILDIR_NAME_MAX bytes (RFC 5321 section 4.5.3.1.1),
 * '/', NUL, a control byte (below 0x20, or 0x7f), a leading '.' (".", "..", hidden files) and
 * ".." anywhere. So a name is always one path component inside root. Call it at RCPT time to
 * refuse a bad name before the message is accepted.
 *
 * Delivery (steps and system calls, for a mailbox that exists):
 *   1. open root/<name> (O_NOFOLLOW: a mailbox that is a symbolic link is refused); when it is
 *      missing, root (one level), root/<name> and its tmp, new and cur are created, mode 0700,
 *      and the directory each was created in is fsynced;
 *   2. create tmp/<unique> (O_EXCL, mode 0600) and write "Return-Path: <sender>" (RFC 5321
 *      section 4.4; "<>" for the null sender), "Delivered-To: rcpt", then the message, with
 *      every CRLF turned into LF (Maildir files have LF line ends, as Dovecot and Postfix write
 *      them; a bare CR or LF is kept). One write() per MAILDIR_WRITE_CHUNK bytes;
 *   3. fsync() and close the file, rename it to new/<unique> (renameat2 RENAME_NOREPLACE,
 *      plain renameat where the file system lacks it), fsync new/ so the name is durable.
 *   A Return-Path the message already holds is left in place (the caller strips it, if wanted).
 *
 * The unique name is "<sec>.M<usec>P<pid>Q<qid>_<n>.<host>,S=<size>": the time of delivery,
 * the process id, the queue id, a process-wide counter (so two deliveries of one message to
 * one mailbox in the same microsecond differ), the host name with '/' written as \057 and ':'
 * as \072 (as the Maildir spec asks), and the file size in bytes (Dovecot's S=, which lets a
 * reader skip a stat()).
 *
 * Limits: root is a NUL-terminated path from our configuration; host is 1..253 bytes of
 * printable ASCII without spaces, qid 16 hex digits, sender and rcpt at most SPOOL_STR_MAX
 * bytes (all asserted). The unique name must fit in NAME_MAX (255): a host name longer than
 * about 160 bytes fails every delivery with -ENAMETOOLONG.
 *
 * Failure: maildir_deliver() returns 0, or -errno with a message in err such as
 * "cannot create ./var/mail/bob: Permission denied". -EINVAL is permanent: a mailbox name
 * maildir_name() refuses, or a sender or recipient holding CR, LF or NUL (nothing is written
 * for these). Everything else is temporary (ENOSPC, EDQUOT, EIO, EACCES, EROFS, ENOMEM, ELOOP
 * for a symlinked mailbox, ...) and the caller defers. A failed delivery leaves no file in
 * tmp/ or new/ (unlink is best effort after an I/O error).
 */
#ifndef RINGMX_MAILDIR_H
#define RINGMX_MAILDIR_H

#include <stddef.h>

#include "queue/spool_record.h" /* struct spool_str */

#define MAILDIR_NAME_MAX 64		  /* bytes in a mailbox name (a local part) */
#define MAILDIR_WRITE_CHUNK (1024 * 1024) /* bytes per write() */

struct maildir_params {
	const char *root;	 /* the directory of all mailboxes, e.g. "./var/mail" */
	struct spool_str local;	 /* the recipient's local part, as received: any bytes */
	struct spool_str sender; /* the envelope sender; empty for the null sender <> */
	struct spool_str rcpt;	 /* the recipient address, for Delivered-To */
	const char *msg;	 /* the message as spooled: CRLF line ends */
	size_t msg_len;
	const char *host; /* this host's name, for the unique file name */
	const char *qid;  /* the queue id, 16 hex digits */
};

/*
 * Maps a local part (len bytes, any bytes) to its mailbox name in out (NUL-terminated).
 * Returns 0, or -EINVAL for a name that is refused (see above).
 */
int maildir_name(const char *local, size_t len, char out[MAILDIR_NAME_MAX + 1]);

/*
 * Delivers p->msg into the mailbox of p->local under p->root (blocking). Returns 0, or -errno
 * with err (err_len bytes, may be 0) describing what failed. Nothing in p is kept.
 */
int maildir_deliver(const struct maildir_params *p, char *err, size_t err_len);

#endif
