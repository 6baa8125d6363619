#include "server/loop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "server/assert.h"

uint64_t
loop_clock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
loop_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
loop_bufs_init(struct loop *l, const struct loop_params *p, char *err, size_t err_len)
{
	l->nbufs = p->nbufs;
	l->buf_size = p->buf_size;
	l->buf_group = p->buf_group;
	l->buf_mask = (unsigned)io_uring_buf_ring_mask(p->nbufs);
	/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves and register it. */
	l->br_map_size = sizeof(struct io_uring_buf) * p->nbufs;
	void *mem = mmap(NULL, l->br_map_size, PROT_READ | PROT_WRITE,
			 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED) {
		snprintf(err, err_len, "mmap buffer ring: %s", strerror(errno));
		return -errno;
	}
	l->br = mem;
	io_uring_buf_ring_init(l->br);
	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)l->br,
		.ring_entries = p->nbufs,
		.bgid = (unsigned short)p->buf_group,
	};
	int rc = io_uring_register_buf_ring(&l->ring, &reg, 0);
	if (rc < 0) {
		snprintf(err, err_len, "io_uring_register_buf_ring: %s", strerror(-rc));
		return rc;
	}
	l->bufs = mmap(NULL, (size_t)p->nbufs * p->buf_size, PROT_READ | PROT_WRITE,
		       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (l->bufs == MAP_FAILED) {
		snprintf(err, err_len, "mmap receive buffers: %s", strerror(errno));
		return -errno;
	}
	for (unsigned i = 0; i < p->nbufs; i++)
		io_uring_buf_ring_add(l->br, loop_buf(l, i), p->buf_size, (unsigned short)i,
				      (int)l->buf_mask, (int)i);
	io_uring_buf_ring_advance(l->br, (int)p->nbufs);
	return 0;
}

int
loop_init(struct loop *l, const struct loop_params *p, char *err, size_t err_len)
{
	ASSERT(p->nbufs > 0 && p->nbufs <= LOOP_BUF_MAX && (p->nbufs & (p->nbufs - 1)) == 0);
	memset(l, 0, sizeof *l);
	struct io_uring_params up = {0};
	/* One thread drives the ring; let the kernel skip cross-thread completion work. */
	up.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	up.cq_entries = p->entries * 8;
	int rc = io_uring_queue_init_params(p->entries, &l->ring, &up);
	if (rc < 0) {
		snprintf(err, err_len, "io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	rc = loop_bufs_init(l, p, err, err_len);
	if (rc < 0)
		return rc;
	l->now_ms = loop_clock_ms();
	l->spin_us = p->spin_us;
	timer_wheel_init(&l->wheel, l->now_ms);
	return 0;
}

void
loop_fini(struct loop *l)
{
	io_uring_queue_exit(&l->ring);
	if (l->bufs && l->bufs != MAP_FAILED)
		munmap(l->bufs, (size_t)l->nbufs * l->buf_size);
	if (l->br)
		munmap(l->br, l->br_map_size);
}

struct io_uring_sqe *
loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
	while (!sqe) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

void
loop_buf_return(struct loop *l, unsigned bid)
{
	ASSERT(bid < l->nbufs);
	io_uring_buf_ring_add(l->br, loop_buf(l, bid), l->buf_size, (unsigned short)bid,
			      (int)l->buf_mask, (int)l->bufs_pending);
	l->bufs_pending++;
}

static void
loop_bufs_publish(struct loop *l)
{
	if (l->bufs_pending) {
		io_uring_buf_ring_advance(l->br, (int)l->bufs_pending);
		l->bufs_pending = 0;
	}
}

int
loop_turn(struct loop *l, const struct loop_ops *ops, void *ctx, int wait_ms)
{
	if (ops->before_wait)
		ops->before_wait(ctx);
	loop_bufs_publish(l);

	/* Under load, look for completions a little before sleeping: on a VM a sleeping vCPU
	 * costs a hypervisor round trip to wake, far more than a short spin. */
	if (l->spin_us > 0 && l->last_cqes > 0) {
		io_uring_submit_and_get_events(&l->ring);
		uint64_t until = loop_clock_us() + l->spin_us;
		while (io_uring_cq_ready(&l->ring) == 0 && loop_clock_us() < until)
			io_uring_get_events(&l->ring);
	}
	int64_t tw = timer_wheel_wait_ms(&l->wheel, l->now_ms);
	if (wait_ms >= 0 && (tw < 0 || tw > wait_ms))
		tw = wait_ms;
	struct io_uring_cqe *cqe = NULL;
	int rc;
	if (io_uring_cq_ready(&l->ring) > 0) {
		rc = io_uring_submit(&l->ring);
	} else if (tw < 0) {
		rc = io_uring_submit_and_wait(&l->ring, 1);
	} else {
		struct __kernel_timespec ts = {.tv_sec = tw / 1000, .tv_nsec = (tw % 1000) * 1000000};
		rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return rc;

	l->now_ms = loop_clock_ms();
	unsigned head, n = 0;
	io_uring_for_each_cqe(&l->ring, head, cqe) {
		ops->on_cqe(ctx, cqe);
		n++;
	}
	io_uring_cq_advance(&l->ring, n);
	l->last_cqes = n;
	loop_bufs_publish(l);
	timer_wheel_advance(&l->wheel, l->now_ms);
	return 0;
}
