/*
 * assert — ASSERT(x), always compiled in: a bug in our code stops the process with the file,
 * line and expression. Never use it for what a client, a disk or a remote server can cause.
 * One definition serves every layer; it lives in the lowest one (queue/).
 */
#ifndef RINGMX_SERVER_ASSERT_H
#define RINGMX_SERVER_ASSERT_H

#include "queue/assert.h"

#endif
