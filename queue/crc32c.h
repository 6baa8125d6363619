/*
 * crc32c — CRC-32C (Castagnoli), the checksum of spool records.
 * Uses the SSE4.2 crc32 instruction when the CPU has it, a slicing-by-8 table otherwise.
 * crc32c(0, p, n) starts a new checksum; pass the previous result to continue one.
 */
#ifndef RINGMX_CRC32C_H
#define RINGMX_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * The two implementations crc32c() chooses between, public so that tests can check that
 * they agree. crc32c_hw() may be called only when crc32c_hw_available() returns true.
 */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
