// SHA-256 on the x86 SHA extensions (SHA-NI). The compression function keeps
// the eight working variables in two registers, {A,B,E,F} and {C,D,G,H}, the
// layout SHA256RNDS2 works on, and extends the message schedule four words at
// a time with SHA256MSG1/SHA256MSG2. Padding and buffering are plain C.

#include "stele_sha256.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define STELE_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t roundConstants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t initialWords[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#ifdef STELE_SHA256_X86

int stele_sha256_accelerated(void) {
    unsigned int eax, ebx, ecx, edx;
    int result = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        int ssse3 = (ecx >> 9) & 1;
        int sse41 = (ecx >> 19) & 1;
        if (ssse3 && sse41 && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
            result = (ebx >> 29) & 1;
        }
    }
    return result;
}

__attribute__((target("sha,ssse3,sse4.1")))
static void compressBlocks(uint32_t words[8], const uint8_t *blocks, size_t blockCount) {
    // Big-endian message words: byte-swap each 32-bit lane.
    const __m128i byteSwap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);

    // words[0..3] = A,B,C,D and words[4..7] = E,F,G,H (lowest lane first).
    __m128i dcba = _mm_loadu_si128((const __m128i *)&words[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&words[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

    for (size_t block = 0; block < blockCount; block++) {
        const uint8_t *input = blocks + 64 * block;
        const __m128i savedABEF = abef;
        const __m128i savedCDGH = cdgh;

        __m128i schedule[16];
        for (int group = 0; group < 4; group++) {
            schedule[group] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(input + 16 * group)), byteSwap);
        }
        for (int group = 4; group < 16; group++) {
            // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four words at once.
            __m128i partial = _mm_sha256msg1_epu32(schedule[group - 4], schedule[group - 3]);
            partial = _mm_add_epi32(partial, _mm_alignr_epi8(schedule[group - 1], schedule[group - 2], 4));
            schedule[group] = _mm_sha256msg2_epu32(partial, schedule[group - 1]);
        }
        for (int group = 0; group < 16; group++) {
            __m128i message = _mm_add_epi32(schedule[group], _mm_loadu_si128((const __m128i *)&roundConstants[4 * group]));
            // Each SHA256RNDS2 runs two rounds on the low two words of `message`.
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);
            message = _mm_shuffle_epi32(message, 0x0E);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, message);
        }

        abef = _mm_add_epi32(abef, savedABEF);
        cdgh = _mm_add_epi32(cdgh, savedCDGH);
    }

    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)&words[0], dcba);
    _mm_storeu_si128((__m128i *)&words[4], hgfe);
}

#else

int stele_sha256_accelerated(void) { return 0; }

static void compressBlocks(uint32_t words[8], const uint8_t *blocks, size_t blockCount) {
    (void)words; (void)blocks; (void)blockCount;
    __builtin_trap();  // unreachable: callers check stele_sha256_accelerated()
}

#endif

void stele_sha256_init(stele_sha256_state *state) {
    memcpy(state->words, initialWords, sizeof initialWords);
    state->totalBytes = 0;
    state->pendingCount = 0;
}

void stele_sha256_update(stele_sha256_state *state, const uint8_t *bytes, size_t count) {
    state->totalBytes += count;
    if (state->pendingCount > 0) {
        size_t take = 64 - state->pendingCount;
        if (take > count) take = count;
        memcpy(state->pending + state->pendingCount, bytes, take);
        state->pendingCount += (uint32_t)take;
        bytes += take;
        count -= take;
        if (state->pendingCount < 64) return;
        compressBlocks(state->words, state->pending, 1);
        state->pendingCount = 0;
    }
    size_t whole = count / 64;
    if (whole > 0) {
        compressBlocks(state->words, bytes, whole);
        bytes += 64 * whole;
        count -= 64 * whole;
    }
    if (count > 0) {
        memcpy(state->pending, bytes, count);
        state->pendingCount = (uint32_t)count;
    }
}

void stele_sha256_final(stele_sha256_state *state, uint8_t digest[32]) {
    uint64_t bitLength = state->totalBytes * 8;
    uint8_t tail[128];
    size_t used = state->pendingCount;
    memcpy(tail, state->pending, used);
    tail[used++] = 0x80;
    size_t tailBlocks = used + 8 <= 64 ? 1 : 2;
    memset(tail + used, 0, 64 * tailBlocks - used);
    for (int i = 0; i < 8; i++) {
        tail[64 * tailBlocks - 1 - i] = (uint8_t)(bitLength >> (8 * i));
    }
    compressBlocks(state->words, tail, tailBlocks);
    for (int i = 0; i < 8; i++) {
        digest[4 * i + 0] = (uint8_t)(state->words[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(state->words[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(state->words[i] >> 8);
        digest[4 * i + 3] = (uint8_t)(state->words[i]);
    }
}

void stele_sha256(const uint8_t *bytes, size_t count, uint8_t digest[32]) {
    stele_sha256_state state;
    stele_sha256_init(&state);
    stele_sha256_update(&state, bytes, count);
    stele_sha256_final(&state, digest);
}
