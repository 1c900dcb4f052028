#ifndef STELE_SHA256_H
#define STELE_SHA256_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256 (FIPS 180-4) on the x86 SHA extensions. Callers must check
/// stele_sha256_accelerated() first: on a CPU without the SHA, SSSE3 and
/// SSE4.1 instructions (or off x86-64) it returns 0 and the other functions
/// must not be called. SteleCrypto falls back to libsodium then.

typedef struct {
    uint32_t words[8];
    uint64_t totalBytes;
    uint8_t pending[64];
    uint32_t pendingCount;
} stele_sha256_state;

int stele_sha256_accelerated(void);
void stele_sha256_init(stele_sha256_state *state);
void stele_sha256_update(stele_sha256_state *state, const uint8_t *bytes, size_t count);
void stele_sha256_final(stele_sha256_state *state, uint8_t digest[32]);
void stele_sha256(const uint8_t *bytes, size_t count, uint8_t digest[32]);

#endif
