/*
 * Fuzzes server/proxy.c, the PROXY protocol v1/v2 header parser. Checks: a result is one of
 * the four; DONE/LOCAL consume at most the input and at most PROXY_HEADER_MAX bytes; every
 * shorter prefix of a complete header is MORE (the parser never decides early); DONE gives an
 * IPv4 or IPv6 source; BAD has a reason.
 */
#include "server/proxy.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data, size);
	struct proxy_info info;
	memset(&info, 0, sizeof info);
	enum proxy_result r = proxy_parse(buf, size, &info);
	FUZZ_CHECK(r == PROXY_BAD || r == PROXY_MORE || r == PROXY_DONE || r == PROXY_LOCAL);
	if (r == PROXY_BAD)
		FUZZ_CHECK(info.error != NULL);
	if (r == PROXY_DONE || r == PROXY_LOCAL) {
		FUZZ_CHECK(info.len > 0 && info.len <= size && info.len <= PROXY_HEADER_MAX);
		FUZZ_CHECK(info.version == 1 || info.version == 2);
		if (r == PROXY_DONE)
			FUZZ_CHECK(info.src.ss_family == AF_INET || info.src.ss_family == AF_INET6);
		/* every prefix of the header was a valid prefix: MORE, never BAD or DONE */
		for (size_t k = 0; k < info.len; k++) {
			struct proxy_info p;
			char *pre = malloc(k ? k : 1);
			FUZZ_CHECK(pre != NULL);
			memcpy(pre, buf, k);
			FUZZ_CHECK(proxy_parse(pre, k, &p) == PROXY_MORE);
			free(pre);
		}
	}
	free(buf);
	return 0;
}
