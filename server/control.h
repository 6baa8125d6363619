/*
 * control — the daemon's side of ringmxctl: a thread that listens on [server] control_socket
 * (a unix socket), takes one client at a time, reads its one request line, asks every shard
 * (shard_ctl), merges their answers (queue/ctl.h) and writes the result back.
 *
 * Usage (main.c):
 *   c = control_open(cfg->control_socket, err, sizeof err);  // before the shards: fails early
 *   control_start(c, shards, nshards, err, sizeof err);      // once they are up
 *   control_stop(c);                                         // first thing on SIGTERM
 *
 * The socket: a stale one left by a crash is removed; a path where a live process answers, or
 * that is not a socket, is refused (two daemons with one spool cannot both run anyway: the
 * spool lock stops the second). It is made mode 0600 (only ringmx's user may talk to it) and
 * removed at stop.
 *
 * Limits: a request is at most CTL_REQ_MAX bytes and must arrive within CTL_TIMEOUT_MS; a shard
 * must take it within SHARD_CTL_TIMEOUT_MS; the answer is written with a CTL_TIMEOUT_MS send
 * timeout. Requests are served one after another (they are rare and short).
 *
 * Failure: control_open and control_start return NULL / -errno with err filled ("PATH: what").
 * At run time a failed client gets an "error: ..." answer, or is dropped; the daemon goes on.
 */
#ifndef RINGMX_CONTROL_H
#define RINGMX_CONTROL_H

#include <stddef.h>

struct control;
struct shard;

struct control *control_open(const char *path, char *err, size_t err_len);
/* The shards must outlive the thread (control_stop before they stop). */
int control_start(struct control *c, struct shard *const *shards, unsigned nshards, char *err,
		  size_t err_len);
/* Stops the thread (a request being served finishes first), closes and removes the socket,
 * frees c. NULL is fine. */
void control_stop(struct control *c);

#endif
