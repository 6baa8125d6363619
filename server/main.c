/*
 * ringmx — the daemon: loads the config, replays the spool, runs the shards, handles signals.
 *
 *   ringmx [-c FILE] [--check]
 *
 * Runs in the foreground and logs to stderr. SIGTERM/SIGINT stop gracefully; SIGHUP reloads
 * the config file (what cannot change without a restart is logged and kept). ringmxctl talks
 * to it on [server] control_socket (server/control.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/spool.h"
#include "dns/dns_local.h"
#include "queue/delivery.h"
#include "queue/recover.h"
#include "queue/spool_scan.h"
#include "server/auth_pool.h"
#include "server/listen.h"
#include "server/config.h"
#include "server/conn_limits.h"
#include "server/control.h"
#include "server/log.h"
#include "server/shard.h"

#define RINGMX_VERSION "0.1.0"
#define SHARDS_MAX 256

static void
usage(FILE *f)
{
	fprintf(f, "usage: ringmx [-c FILE] [--check] [--version]\n"
		   "  -c FILE    config file (INI); without it, the embedded default config\n"
		   "  --check    validate the config and exit (0: valid, 1: the first error)\n");
}

/* Creates dir and its parents (mode 0700 for what it creates). */
static int
mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

struct recover_arg {
	struct shard_recovered *per_shard;
	unsigned nshards;
	bool failed;
};

static void
on_recovered_msg(void *arg, struct qmsg *m)
{
	struct recover_arg *ra = arg;
	struct shard_recovered *r = &ra->per_shard[m->home];
	if (r->nmsgs == r->msgs_cap) {
		uint32_t cap = r->msgs_cap ? r->msgs_cap * 2 : 64;
		struct qmsg **v = realloc(r->msgs, cap * sizeof *v);
		if (!v) {
			ra->failed = true;
			qmsg_unref(m);
			return;
		}
		r->msgs = v;
		r->msgs_cap = cap;
	}
	r->msgs[r->nmsgs++] = m;
}

static void
on_recovered_segment(void *arg, unsigned stream, uint32_t seq, unsigned home, uint32_t live)
{
	struct recover_arg *ra = arg;
	struct shard_recovered *r = &ra->per_shard[home];
	if (r->nsegs == r->segs_cap) {
		uint32_t cap = r->segs_cap ? r->segs_cap * 2 : 64;
		struct shard_recovered_seg *v = realloc(r->segs, cap * sizeof *v);
		if (!v) {
			ra->failed = true;
			return;
		}
		r->segs = v;
		r->segs_cap = cap;
	}
	r->segs[r->nsegs++] = (struct shard_recovered_seg){.stream = (uint8_t)stream, .seq = seq,
							    .live = live};
}

static void
on_scan_problem(void *arg, const char *path, uint64_t offset, uint64_t skipped, const char *what)
{
	(void)arg;
	if (log_start(LOG_WARN, "spool_damage")) {
		log_str("segment", path);
		log_u64("offset", offset);
		log_u64("skipped", skipped);
		log_str("problem", what);
		log_finish();
	}
}

/* Replays the spool: what is still to deliver (per home shard), damage, the next segment
 * number and the newest queue id. */
static int
spool_recover(const struct config *cfg, unsigned nshards, struct shard_recovered *per_shard,
	      uint32_t *next_seq, uint64_t *max_qid)
{
	struct recover_arg ra = {.per_shard = per_shard, .nshards = nshards};
	struct recover_ops ops = {
	    .on_msg = on_recovered_msg,
	    .on_segment = cfg->deliver_enabled ? on_recovered_segment : NULL,
	    .on_problem = on_scan_problem,
	    .arg = &ra,
	};
	struct recover_stats st;
	int rc = recover_spool(cfg->spool_dir, nshards, cfg->deliver_enabled, &ops, &st);
	if (rc < 0) {
		fprintf(stderr, "ringmx: %s: cannot scan spool: %s\n", cfg->spool_dir, strerror(-rc));
		return rc;
	}
	if (ra.failed) {
		fprintf(stderr, "ringmx: out of memory while recovering the spool\n");
		return -ENOMEM;
	}
	if (log_start(LOG_INFO, "spool_recovered")) {
		log_str("dir", cfg->spool_dir);
		log_u64("segments", st.segments);
		log_u64("records", st.records);
		log_u64("messages_pending", st.messages);
		log_u64("recipients_pending", st.rcpts_pending);
		log_u64("corrupt_regions", st.corrupt_regions);
		log_u64("truncated_tails", st.truncated_tails);
		log_finish();
	}
	*next_seq = st.max_seq + 1;
	*max_qid = st.max_qid;
	return 0;
}

static unsigned
shard_count(const struct config *cfg)
{
	/* Loading the config already turned shards = 0 into config_cpu_count(). */
	unsigned n = cfg->shards ? cfg->shards : 1;
	return n > SHARDS_MAX ? SHARDS_MAX : n;
}

struct daemon {
	const char *config_path;
	struct config *cfg;
	struct shard *shards[SHARDS_MAX];
	unsigned nshards;
	uint64_t cfg_gen;
	_Atomic uint32_t next_seq;
	struct delivery_mesh *mesh;
	struct dns_local local;
	struct shard_recovered recovered[SHARDS_MAX];
	struct control *ctl;
	struct auth_pool *auth_pool; /* AUTH's password checks, for every shard */
};

static void
daemon_reload(struct daemon *d)
{
	if (!d->config_path) {
		log_msg(LOG_WARN, "reload", "running on the embedded default config: nothing to reload");
		return;
	}
	char err[1024];
	struct config *next = config_load_file(d->config_path, err, sizeof err);
	if (!next) {
		log_msg(LOG_ERROR, "reload_failed", "%s (keeping the running config)", err);
		return;
	}
	char keys[512];
	if (config_restart_changes(d->cfg, next, keys, sizeof keys) > 0) {
		log_msg(LOG_WARN, "reload_partial", "changed but need a restart: %s", keys);
		/* Keep the running values of those keys so the running shards stay consistent. */
		memcpy(next->listen, d->cfg->listen, sizeof next->listen);
		next->nlisten = d->cfg->nlisten;
		memcpy(next->listen_tls, d->cfg->listen_tls, sizeof next->listen_tls);
		next->nlisten_tls = d->cfg->nlisten_tls;
		next->shards = d->cfg->shards;
		next->max_connections = d->cfg->max_connections;
		memcpy(next->spool_dir, d->cfg->spool_dir, sizeof next->spool_dir);
		next->fsync = d->cfg->fsync;
		next->segment_size = d->cfg->segment_size;
		next->busy_poll_us = d->cfg->busy_poll_us;
		next->pin_shards = d->cfg->pin_shards;
		memcpy(next->control_socket, d->cfg->control_socket, sizeof next->control_socket);
		next->deliver_enabled = d->cfg->deliver_enabled;
		next->auth_check_threads = d->cfg->auth_check_threads;
	}
	d->cfg_gen++;
	for (unsigned i = 0; i < d->nshards; i++)
		shard_config_publish(d->shards[i], next, d->cfg_gen);
	/* The old config is freed only once every shard has moved to the new one. */
	for (int waited = 0; waited < 5000; waited++) {
		unsigned acked = 0;
		for (unsigned i = 0; i < d->nshards; i++)
			acked += shard_config_acked(d->shards[i]) == d->cfg_gen;
		if (acked == d->nshards) {
			config_free(d->cfg);
			d->cfg = next;
			log_set_level((enum log_level)next->log_level);
			log_msg(LOG_INFO, "reloaded", "%s", d->config_path);
			return;
		}
		usleep(1000);
	}
	log_msg(LOG_WARN, "reload_slow", "a shard did not take the new config within 5 s");
	d->cfg = next; /* the old one is leaked rather than freed under a shard */
}

static void recovered_free(struct daemon *d);

static int
daemon_start(struct daemon *d)
{
	char err[512];
	uint32_t seq;
	uint64_t max_qid;
	d->nshards = shard_count(d->cfg);
	/* the control socket first: a path in use stops the start before anything else runs */
	d->ctl = control_open(d->cfg->control_socket, err, sizeof err);
	if (!d->ctl) {
		fprintf(stderr, "ringmx: %s\n", err);
		log_msg(LOG_ERROR, "start_failed", "%s", err);
		return -1;
	}
	if (spool_recover(d->cfg, d->nshards, d->recovered, &seq, &max_qid) < 0)
		return -1;
	atomic_store(&d->next_seq, seq);
	conn_limits_init();
	if (d->cfg->deliver_enabled) {
		d->mesh = delivery_mesh_new(d->nshards);
		if (!d->mesh) {
			fprintf(stderr, "ringmx: out of memory for the delivery mesh\n");
			return -1;
		}
		/* this host's addresses, so that an MX pointing back here is a loop */
		dns_local_add_interfaces(&d->local);
		for (unsigned i = 0; i < d->cfg->nlisten + d->cfg->nlisten_tls; i++) {
			char ip[INET6_ADDRSTRLEN];
			unsigned port;
			const struct config_listen *ln = i < d->cfg->nlisten
							     ? &d->cfg->listen[i]
							     : &d->cfg->listen_tls[i - d->cfg->nlisten];
			listen_addr_text((const struct sockaddr *)&ln->addr, ip, sizeof ip, &port);
			dns_local_add_text(&d->local, ip);
		}
	}
	/* Only a submission listener takes AUTH, and those need a restart to appear. */
	if (d->cfg->auth_users) {
		unsigned threads = d->cfg->auth_check_threads;
		struct auth_pool_params ap = {.threads = threads,
					      .queue_max = threads * AUTH_POOL_QUEUE_PER_THREAD,
					      .ninboxes = d->nshards};
		d->auth_pool = auth_pool_create(&ap, err, sizeof err);
		if (!d->auth_pool) {
			fprintf(stderr, "ringmx: %s\n", err);
			log_msg(LOG_ERROR, "start_failed", "%s", err);
			return -1;
		}
	}
	for (unsigned i = 0; i < d->nshards; i++) {
		struct shard_params p = {.id = i,
					 .cfg = d->cfg,
					 .next_seq = &d->next_seq,
					 .qid_floor_ms = SHARD_QID_MS(max_qid),
					 .mesh = d->mesh,
					 .local = &d->local,
					 .recovered = &d->recovered[i],
					 .auth_pool = d->auth_pool};
		d->shards[i] = shard_create(&p, err, sizeof err);
		if (!d->shards[i]) {
			fprintf(stderr, "ringmx: %s\n", err);
			log_msg(LOG_ERROR, "start_failed", "%s", err);
			return -1;
		}
		if (d->mesh)
			delivery_mesh_set_wake(d->mesh, i, shard_wake_fd(d->shards[i]));
	}
	for (unsigned i = 0; i < d->nshards; i++) {
		if (shard_start(d->shards[i], err, sizeof err) < 0) {
			fprintf(stderr, "ringmx: %s\n", err);
			log_msg(LOG_ERROR, "start_failed", "%s", err);
			return -1;
		}
	}
	recovered_free(d);
	if (control_start(d->ctl, d->shards, d->nshards, err, sizeof err) < 0) {
		fprintf(stderr, "ringmx: %s\n", err);
		log_msg(LOG_ERROR, "start_failed", "%s", err);
		return -1;
	}
	if (log_start(LOG_INFO, "started")) {
		log_str("version", RINGMX_VERSION);
		log_str("config", d->cfg->source);
		log_str("hostname", d->cfg->hostname);
		log_u64("shards", d->nshards);
		for (unsigned i = 0; i < d->cfg->nlisten; i++)
			log_str("listen", d->cfg->listen[i].text);
		for (unsigned i = 0; i < d->cfg->nlisten_tls; i++)
			log_str("listen_tls", d->cfg->listen_tls[i].text);
		if (d->cfg->tls_ctx)
			log_str("starttls", d->cfg->starttls ? "yes" : "no");
		log_str("spool", d->cfg->spool_dir);
		log_str("control_socket", d->cfg->control_socket);
		log_finish();
	}
	return 0;
}

/* What recovery found and no shard adopted (a failed start, or delivery off). */
static void
recovered_free(struct daemon *d)
{
	for (unsigned i = 0; i < SHARDS_MAX; i++) {
		struct shard_recovered *r = &d->recovered[i];
		for (uint32_t k = 0; k < r->nmsgs; k++)
			qmsg_unref(r->msgs[k]);
		free(r->msgs);
		free(r->segs);
		memset(r, 0, sizeof *r);
	}
}

static void
daemon_stop(struct daemon *d)
{
	/* ringmxctl first: it asks the shards, which must still run to answer */
	control_stop(d->ctl);
	d->ctl = NULL;
	for (unsigned i = 0; i < d->nshards; i++)
		if (d->shards[i])
			shard_request_stop(d->shards[i]);
	uint64_t msgs = 0, conns = 0;
	for (unsigned i = 0; i < d->nshards; i++)
		if (d->shards[i])
			shard_join(d->shards[i]);
	/* The checks' workers write to the shards' eventfds: gone before the shards are. A shard
	 * stops only once its checks came back, so none is left to drop but after a failed start
	 * or a loop error. */
	auth_pool_destroy(d->auth_pool);
	d->auth_pool = NULL;
	for (unsigned i = 0; i < d->nshards; i++) {
		if (!d->shards[i])
			continue;
		msgs += atomic_load(&shard_stats(d->shards[i])->messages);
		conns += atomic_load(&shard_stats(d->shards[i])->connections);
		shard_destroy(d->shards[i]);
		d->shards[i] = NULL;
	}
	recovered_free(d);
	delivery_mesh_free(d->mesh);
	d->mesh = NULL;
	if (log_start(LOG_INFO, "exit")) {
		log_u64("connections", conns);
		log_u64("messages", msgs);
		log_finish();
	}
}

int
main(int argc, char **argv)
{
	struct daemon d = {0};
	bool check = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			d.config_path = argv[++i];
		} else if (strcmp(argv[i], "--check") == 0) {
			check = true;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("ringmx %s\n", RINGMX_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	char err[1024];
	d.cfg = d.config_path ? config_load_file(d.config_path, err, sizeof err)
			      : config_load_default(err, sizeof err);
	if (!d.cfg) {
		fprintf(stderr, "ringmx: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", d.cfg->source);
		config_free(d.cfg);
		return 0;
	}
	log_thread_init(-1, false);
	log_set_level((enum log_level)d.cfg->log_level);
	int rc = mkdir_p(d.cfg->spool_dir);
	if (rc < 0) {
		fprintf(stderr, "ringmx: %s: cannot create spool directory: %s\n", d.cfg->spool_dir,
			strerror(-rc));
		return 1;
	}
	if (d.cfg->deliver_enabled && (rc = mkdir_p(d.cfg->maildir_root)) < 0)
		log_msg(LOG_WARN, "maildir_root", "%s: cannot create: %s (local delivery defers "
			"until it exists)", d.cfg->maildir_root, strerror(-rc));
	int lock_fd = spool_dir_lock(d.cfg->spool_dir, err, sizeof err);
	if (lock_fd < 0) {
		fprintf(stderr, "ringmx: %s\n", err);
		config_free(d.cfg);
		return 1;
	}
	if (!d.cfg->fsync)
		log_msg(LOG_WARN, "fsync_off",
			"spool fsync is OFF: accepted mail can be lost on a crash (benchmarks only)");
	/* Signals are taken here, synchronously; no shard thread ever sees one. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (daemon_start(&d) < 0) {
		daemon_stop(&d);
		config_free(d.cfg);
		return 1;
	}
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGHUP) {
			daemon_reload(&d);
		} else if (sig == SIGTERM || sig == SIGINT) {
			log_msg(LOG_INFO, "signal", "%s: stopping gracefully",
				sig == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		}
	}
	daemon_stop(&d);
	config_free(d.cfg);
	return 0;
}
