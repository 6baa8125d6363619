/*
 * Fuzzes server/sasl.c: base64 decoding of AUTH responses (output within cap, decoding the
 * re-encoded output gives it back) and the PLAIN split (slices inside the message, the NULs
 * where RFC 4616 puts them).
 */
#include <errno.h>

#include "server/sasl.h"
#include "tests/fuzz/fuzz.h"

static size_t
b64_encode(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);
	FUZZ_CHECK(in != NULL);
	memcpy(in, data, size);
	size_t cap = size / 4 * 3 + 3;
	char *out = malloc(cap);
	FUZZ_CHECK(out != NULL);
	long n = sasl_base64_decode(in, size, out, cap);
	if (n >= 0) {
		FUZZ_CHECK((size_t)n <= cap);
		/* what decoded re-encodes and decodes to the same bytes */
		char *enc = malloc((size_t)n / 3 * 4 + 8);
		char *back = malloc((size_t)n + 3);
		FUZZ_CHECK(enc && back);
		size_t el = b64_encode((const unsigned char *)out, (size_t)n, enc);
		long m = el ? sasl_base64_decode(enc, el, back, (size_t)n + 3) : 0;
		FUZZ_CHECK(m == n && memcmp(back, out, (size_t)n) == 0);
		free(enc);
		free(back);
	}
	struct sasl_plain pl;
	if (sasl_plain_split(in, size, &pl) == 0) {
		FUZZ_CHECK(pl.authcid >= in && pl.authcid + pl.authcid_len <= in + size);
		FUZZ_CHECK(pl.passwd >= in && pl.passwd + pl.passwd_len <= in + size);
		FUZZ_CHECK(pl.authzid_len == 0 || (pl.authzid >= in &&
						   pl.authzid + pl.authzid_len <= in + size));
	}
	(void)sasl_name_ok(in, size);
	(void)sasl_is_cancel(in, size);
	(void)sasl_mech_lookup(in, size);
	free(out);
	free(in);
	return 0;
}
