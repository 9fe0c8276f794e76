/* The checkpoint store's float planes in C: byte-plane split and join, and order-0 rANS for the
 * exponent plane (deepdive.engine.ckpt.codec).
 *
 * Why: the exponent plane of float weights carries about 2.55 bits per byte. zstd's Huffman coder
 * (the store's first coder) spends whole bits per symbol and lands 2.3 % above that entropy; rANS
 * with frequencies on 2^12 slots lands about 0.1 % above it. The split, the histogram and the coding
 * of one chunk happen in one call that releases the GIL, so the store's worker threads run in
 * parallel.
 *
 * The coder follows Fabian Giesen's public-domain rans_word (16-bit renormalisation) with a
 * reciprocal in place of the division: 64 bits wide in the scalar loop, and rans_byte's 32-bit one
 * in the AVX2 loop, which is exact only below 2^31: so L = 2^15 and states live in [2^15, 2^31).
 *
 * rANS payload (little endian):
 *   u8 mode   0 = rANS, 1 = one symbol repeated (then: u8 symbol; nothing else)
 *   u8 scale  log2 of the frequency total: 12
 *   32 bytes  bitmap of the symbols present (bit s%8 of byte s/8)
 *   u16 × k   the frequency of each present symbol, in symbol order (sum: 2^12)
 *   u32 × 16  the encoder's final states (the decoder's initial states)
 *   u16 × m   the renormalisation words, in the order the decoder reads them
 * Symbol i is coded by state i % 16. The decoder checks that it ends on exactly the last word and
 * that every state returns to L, so a damaged payload is refused rather than decoded to garbage.
 *
 * Float planes (the layout codec.py documents: transform 1): for each element, its top 16 bits
 * hold sign, exponent and top mantissa bits; the exponent's 8 bits form one plane, the sign with the
 * top 7 mantissa bits another, and the element's lower bytes (fp32: 2, fp64: 6) a third.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "_rans.c reads and writes little-endian words with memcpy: port it before building on a big-endian machine"
#endif

#define NSTATES 16   /* two AVX2 vectors of eight */
#define SCALE 12
#define TOTAL (1u << SCALE)
#define RANS_L (1u << 15)
#define HEADER_FIXED (2 + 32)
#define MAX_PLANE ((size_t)1 << 31)   /* the histograms count in 32 bits */

static int avx2_enabled;   /* set once at import: the CPU has AVX2 and the tables are built */

typedef unsigned __int128 u128;

typedef struct {
    uint64_t rcp;        /* q = (x * rcp) >> 64 == x / freq for x < 2^31 (freq 1: x - 1, see bias) */
    uint32_t x_max;      /* renormalise (emit a word) when x >= x_max */
    uint32_t bias;       /* start (freq 1: start + TOTAL - 1) */
    uint32_t cmpl_freq;  /* TOTAL - freq: x' = x + bias + q * cmpl_freq == (x / f) * TOTAL + x % f + start */
    uint32_t pad;
} enc_sym;

static void enc_sym_init(enc_sym *s, uint32_t start, uint32_t freq) {
    s->x_max = ((RANS_L >> SCALE) << 16) * freq;
    s->cmpl_freq = TOTAL - freq;
    s->pad = 0;
    if (freq == 1) {
        /* 2^64 does not fit: rcp = 2^64 - 1 gives q = x - 1 for 1 <= x < 2^64, and the bias takes
         * the difference: x + (start + M - 1) + (x - 1)(M - 1) = x M + start. */
        s->rcp = ~(uint64_t)0;
        s->bias = start + TOTAL - 1;
    } else {
        /* ceil(2^64 / f): the error x (rcp - 2^64 / f) / 2^64 < 2^31 / 2^64 never reaches the next
         * integer, since x / f is at least 1 / f below it. */
        s->rcp = (uint64_t)(((u128)1 << 64) / freq) + 1;
        s->bias = start;
    }
}

/* Branch-free: whether a word goes out depends on the data (about one symbol in six for an exponent
 * plane), so a branch would mispredict. The word is always written and the pointer moves only when
 * it counts (the scratch area has a spare word below). */
#define ENC_PUT(x, sym)                                                      \
    do {                                                                     \
        const enc_sym *s_ = &syms[sym];                                      \
        uint32_t out_ = (x) >= s_->x_max;                                    \
        w[-1] = (uint16_t)(x);                                               \
        w -= out_;                                                           \
        (x) >>= out_ << 4;                                                   \
        uint32_t q_ = (uint32_t)(((u128)(x) * s_->rcp) >> 64);               \
        (x) += s_->bias + q_ * s_->cmpl_freq;                                \
    } while (0)

/* Code src[0..n) backwards, symbol i with state i % NSTATES, writing words downwards from w,
 * starting from and leaving the states in states: the tail (n % 16 symbols), then the whole groups
 * unless with_groups is 0 (the AVX2 loop codes them). Returns the lowest word written. */
static uint16_t *encode_loop(const uint8_t *restrict src, size_t n, const enc_sym *restrict syms,
                             uint16_t *restrict w, uint32_t *restrict states, int with_groups) {
    uint32_t x[NSTATES];
    memcpy(x, states, sizeof x);
    size_t groups = n / NSTATES;
    for (size_t k = n; k > groups * NSTATES; k--) ENC_PUT(x[(k - 1) % NSTATES], src[k - 1]);
    if (with_groups) {
        for (size_t g = groups; g > 0; g--) {
            const uint8_t *b = src + (g - 1) * NSTATES;
            for (int j = NSTATES - 1; j >= 0; j--) ENC_PUT(x[j], b[j]);
        }
    }
    memcpy(states, x, sizeof x);
    return w;
}
#undef ENC_PUT

/* The same coding, eight states at once with AVX2 (x86-64 machines that have it; the scalar loop
 * above elsewhere). The output is identical word for word: symbol i still goes to state i % 16 and a
 * group's words land in the same places. Per symbol: a packed u32 (freq | rcp_shift << 12 |
 * bias << 16) and a 32-bit reciprocal (rans_byte's: exact for x < 2^31) are loaded; the words of
 * the states that renormalise are packed to the top of an 8-word vector by a shuffle from a table
 * indexed by the mask, and stored below the previous ones. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

typedef struct {
    uint64_t pair[256];      /* freq | rcp_shift << 12 | bias << 16 (bias < 2^13), and rcp << 32 */
} simd_syms;

static void simd_syms_init(simd_syms *t, const uint32_t *freq) {
    uint32_t start = 0;
    for (int s = 0; s < 256; s++) {
        t->pair[s] = 0;
        if (!freq[s]) continue;
        uint32_t f = freq[s], shift = 0, bias = start, rcp;
        if (f == 1) {
            rcp = ~0u;
            bias = start + TOTAL - 1;
        } else {
            while (f > (1u << shift)) shift++;
            rcp = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
            shift -= 1;
        }
        t->pair[s] = (uint64_t)(f | (shift << 12) | (bias << 16)) | ((uint64_t)rcp << 32);
        start += f;
    }
}

static uint8_t compact_lut[256][16];   /* mask -> pshufb moving the masked words to the top, in order */

static void compact_lut_init(void) {
    for (int m = 0; m < 256; m++) {
        int k = 8 - __builtin_popcount((unsigned)m);
        memset(compact_lut[m], 0x80, 16);
        for (int lane = 0; lane < 8; lane++) {
            if (!(m & (1 << lane))) continue;
            compact_lut[m][2 * k] = (uint8_t)(2 * lane);
            compact_lut[m][2 * k + 1] = (uint8_t)(2 * lane + 1);
            k++;
        }
    }
}

/* One vector of eight states: renormalise (the words go below w), then code the symbols whose
 * (packed, rcp) pairs are at b[0..7]. */
__attribute__((target("avx2"))) static inline __m256i encode_vec_avx2(__m256i x, const uint8_t *b,
                                                                       const simd_syms *t, uint16_t **w) {
    const __m256i low12 = _mm256_set1_epi32(0xfff), low16 = _mm256_set1_epi32(0xffff);
    const __m256i four = _mm256_set1_epi32(0xf), total = _mm256_set1_epi32((int)TOTAL);
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    /* eight 64-bit loads of (packed, rcp) pairs rather than vpgatherdd: as fast here, and gathers
     * are microcoded on Intel parts with the Downfall mitigation */
    __m256i lo4 = _mm256_set_epi64x((long long)t->pair[b[3]], (long long)t->pair[b[2]], (long long)t->pair[b[1]], (long long)t->pair[b[0]]);
    __m256i hi4 = _mm256_set_epi64x((long long)t->pair[b[7]], (long long)t->pair[b[6]], (long long)t->pair[b[5]], (long long)t->pair[b[4]]);
    __m256i pl = _mm256_permutevar8x32_epi32(lo4, order), ph = _mm256_permutevar8x32_epi32(hi4, order);
    __m256i pk = _mm256_permute2x128_si256(pl, ph, 0x20);
    __m256i rcp = _mm256_permute2x128_si256(pl, ph, 0x31);
    __m256i freq = _mm256_and_si256(pk, low12);
    /* renormalise where x >= freq << 19 (both below 2^31, so the signed compare is right) */
    __m256i x_max = _mm256_slli_epi32(freq, 31 - SCALE);
    __m256i out = _mm256_cmpgt_epi32(x, _mm256_sub_epi32(x_max, _mm256_set1_epi32(1)));
    int m = _mm256_movemask_ps(_mm256_castsi256_ps(out));
    __m256i lo = _mm256_and_si256(x, low16);
    __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
    words = _mm_shuffle_epi8(words, _mm_loadu_si128((const __m128i *)compact_lut[m]));
    _mm_storeu_si128((__m128i *)(*w - 8), words);
    *w -= __builtin_popcount((unsigned)m);
    x = _mm256_srlv_epi32(x, _mm256_and_si256(out, _mm256_set1_epi32(16)));
    /* q = mulhi(x, rcp) >> rcp_shift: lanes 0 2 4 6 and 1 3 5 7 separately */
    __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(x, rcp), 32);
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(rcp, 32));
    __m256i q = _mm256_srlv_epi32(_mm256_blend_epi32(even, odd, 0xAA), _mm256_and_si256(_mm256_srli_epi32(pk, 12), four));
    __m256i cmpl = _mm256_sub_epi32(total, freq);
    return _mm256_add_epi32(_mm256_add_epi32(x, _mm256_srli_epi32(pk, 16)), _mm256_mullo_epi32(q, cmpl));
}

/* The whole groups, two vectors (states 0-7 and 8-15) at a time: their dependency chains are
 * independent, so one fills the other's multiply latency. State 15 goes first, as in the scalar loop. */
__attribute__((target("avx2")))
static uint16_t *encode_groups_avx2(const uint8_t *restrict src, size_t groups, const simd_syms *restrict t,
                                    uint16_t *w, uint32_t *restrict states) {
    __m256i a = _mm256_loadu_si256((const __m256i *)states);
    __m256i b = _mm256_loadu_si256((const __m256i *)(states + 8));
    for (size_t g = groups; g > 0; g--) {
        const uint8_t *sym = src + (g - 1) * NSTATES;
        b = encode_vec_avx2(b, sym + 8, t, &w);
        a = encode_vec_avx2(a, sym, t, &w);
    }
    _mm256_storeu_si256((__m256i *)states, a);
    _mm256_storeu_si256((__m256i *)(states + 8), b);
    return w;
}

static int32_t expand_lut[256][8];   /* mask -> for each lane, the rank of its word among the masked lanes */

static void expand_lut_init(void) {
    for (int m = 0; m < 256; m++) {
        int r = 0;
        for (int lane = 0; lane < 8; lane++) {
            expand_lut[m][lane] = (m & (1 << lane)) ? r++ : 0;
        }
    }
}

/* Decode one vector of eight states: their symbols to out[0..7], then the states below L take the
 * next words in lane order (the scalar decoder's order). */
__attribute__((target("avx2"))) static inline __m256i decode_vec_avx2(__m256i x, const int *table, uint8_t *out,
                                                                       const uint8_t **pp) {
    const __m256i mask = _mm256_set1_epi32((int)(TOTAL - 1)), low12 = _mm256_set1_epi32(0xfff);
    const __m256i lim = _mm256_set1_epi32((int)RANS_L);
    const __m256i bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                           0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    uint32_t slot[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)slot, _mm256_and_si256(x, mask));
    __m256i e = _mm256_setr_epi32(table[slot[0]], table[slot[1]], table[slot[2]], table[slot[3]],
                                  table[slot[4]], table[slot[5]], table[slot[6]], table[slot[7]]);
    __m256i syms = _mm256_shuffle_epi8(e, bytes);
    uint32_t lo = (uint32_t)_mm256_cvtsi256_si32(syms), hi = (uint32_t)_mm256_extract_epi32(syms, 4);
    memcpy(out, &lo, 4);
    memcpy(out + 4, &hi, 4);
    __m256i freq = _mm256_and_si256(_mm256_srli_epi32(e, 8), low12);
    x = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x, SCALE)), _mm256_srli_epi32(e, 20));
    __m256i need = _mm256_cmpgt_epi32(lim, x);
    int m = _mm256_movemask_ps(_mm256_castsi256_ps(need));
    __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)*pp));
    words = _mm256_permutevar8x32_epi32(words, _mm256_loadu_si256((const __m256i *)expand_lut[m]));
    *pp += 2 * __builtin_popcount((unsigned)m);
    return _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), words), need);
}

/* Whole groups while at least 2 * NSTATES bytes of words remain (the most a group reads; the
 * second vector's 16-byte load then stays inside the payload); returns the symbols decoded. */
__attribute__((target("avx2")))
static size_t decode_groups_avx2(const uint32_t *restrict table, uint32_t *restrict states, const uint8_t **pp,
                                 const uint8_t *end, uint8_t *restrict out, size_t n) {
    __m256i a = _mm256_loadu_si256((const __m256i *)states);
    __m256i b = _mm256_loadu_si256((const __m256i *)(states + 8));
    const uint8_t *p = *pp;
    const int *t = (const int *)table;
    size_t i = 0;
    for (; i + NSTATES <= n && end - p >= 2 * NSTATES; i += NSTATES) {
        a = decode_vec_avx2(a, t, out + i, &p);
        b = decode_vec_avx2(b, t, out + i + 8, &p);
    }
    _mm256_storeu_si256((__m256i *)states, a);
    _mm256_storeu_si256((__m256i *)(states + 8), b);
    *pp = p;
    return i;
}

/* Called once at import, under the GIL, before any thread codes. */
static int detect_avx2(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return 0;
    compact_lut_init();
    expand_lut_init();
    return 1;
}
#else
#define HAVE_AVX2_PATH 0
static int detect_avx2(void) { return 0; }
#endif

/* Frequencies summing to TOTAL, every present symbol at least 1, close to the counts: round, then
 * move the difference one slot at a time where it costs the fewest bits. */
static void normalize(const uint64_t *count, uint64_t n, uint32_t *freq) {
    const int64_t total = TOTAL;
    int64_t sum = 0;
    for (int s = 0; s < 256; s++) {
        if (!count[s]) { freq[s] = 0; continue; }
        uint64_t f = (uint64_t)(((double)count[s] * (double)total) / (double)n + 0.5);
        if (f < 1) f = 1;
        freq[s] = (uint32_t)f;
        sum += (int64_t)f;
    }
    while (sum != total) {   /* TOTAL > 256: some symbol always has a slot to spare */
        int best = -1;
        double best_cost = 0.0;
        for (int s = 0; s < 256; s++) {
            if (!count[s]) continue;
            double cost;
            if (sum > total) {       /* take one slot away: costs count * log2(f / (f - 1)) */
                if (freq[s] <= 1) continue;
                cost = (double)count[s] * log2((double)freq[s] / (double)(freq[s] - 1));
            } else {                 /* give one slot: saves count * log2((f + 1) / f) */
                cost = -(double)count[s] * log2((double)(freq[s] + 1) / (double)freq[s]);
            }
            if (best < 0 || cost < best_cost) { best = s; best_cost = cost; }
        }
        if (sum > total) { freq[best]--; sum--; } else { freq[best]++; sum++; }
    }
}

/* The most an encoded payload of n symbols can take: each symbol emits at most one word. */
static size_t rans_bound(size_t n) { return HEADER_FIXED + 2 * 256 + 4 * NSTATES + 2 * n; }

/* Scratch words for n symbols: at most one word each, and room below for the AVX2 loop's 8-word stores. */
static size_t scratch_words(size_t n) { return n + 2 * NSTATES; }

/* Encode src[0..n) (n > 0, its histogram in count) into out (rans_bound(n) bytes), using scratch
 * (scratch_words(n)), with the AVX2 loop when simd; returns the payload's length. */
static size_t encode_plane(const uint8_t *src, size_t n, const uint64_t *count, uint8_t *out, uint16_t *scratch, int simd) {
    int present = 0, last = 0;
    for (int s = 0; s < 256; s++)
        if (count[s]) { present++; last = s; }
    if (present == 1) {
        out[0] = 1;
        out[1] = (uint8_t)last;
        return 2;
    }
    uint32_t freq[256];
    normalize(count, n, freq);
    enc_sym syms[256];
    uint8_t *p = out;
    *p++ = 0;
    *p++ = SCALE;
    memset(p, 0, 32);
    uint32_t start = 0;
    for (int s = 0; s < 256; s++) {
        if (!freq[s]) continue;
        p[s >> 3] |= (uint8_t)(1u << (s & 7));
        enc_sym_init(&syms[s], start, freq[s]);
        start += freq[s];
    }
    p += 32;
    for (int s = 0; s < 256; s++) {
        if (!freq[s]) continue;
        *p++ = (uint8_t)(freq[s] & 0xff);
        *p++ = (uint8_t)(freq[s] >> 8);
    }
    uint32_t x[NSTATES];
    for (int j = 0; j < NSTATES; j++) x[j] = RANS_L;
    uint16_t *end = scratch + scratch_words(n);
    uint16_t *w = encode_loop(src, n, syms, end, x, !simd);
#if HAVE_AVX2_PATH
    if (simd) {
        simd_syms t;
        simd_syms_init(&t, freq);
        w = encode_groups_avx2(src, n / NSTATES, &t, w, x);
    }
#endif
    memcpy(p, x, sizeof x);
    p += sizeof x;
    size_t words = (size_t)(end - w);
    memcpy(p, w, 2 * words);
    return (size_t)(p - out) + 2 * words;
}

static void histogram(const uint8_t *restrict src, size_t n, uint64_t *count) {
    uint32_t h[4][256];
    memset(h, 0, sizeof h);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        h[0][src[i]]++; h[1][src[i + 1]]++; h[2][src[i + 2]]++; h[3][src[i + 3]]++;
    }
    for (; i < n; i++) h[0][src[i]]++;
    for (int s = 0; s < 256; s++) count[s] = (uint64_t)h[0][s] + h[1][s] + h[2][s] + h[3][s];
}

#define DEC_GET(x, dst)                                                       \
    do {                                                                      \
        uint32_t e_ = table[(x) & (TOTAL - 1)];                               \
        (dst) = (uint8_t)e_;                                                  \
        (x) = ((e_ >> 8) & 0xfff) * ((x) >> SCALE) + (e_ >> 20);              \
        uint16_t w_;                                                          \
        memcpy(&w_, p, 2);                                                    \
        uint32_t in_ = (x) < RANS_L;   /* shift and mask: gcc turns ?: into a branch */ \
        (x) = ((x) << (in_ << 4)) | ((uint32_t)w_ & (0u - in_));              \
        p += 2 * in_;                                                         \
    } while (0)

/* Decode whole groups of NSTATES symbols while at least 2 * NSTATES bytes of words remain (a group
 * reads at most one word per state), branch-free; returns how many symbols it decoded. */
static size_t decode_loop(const uint32_t *restrict table, uint32_t *restrict states, const uint8_t **pp,
                          const uint8_t *end, uint8_t *restrict out, size_t n) {
    const uint8_t *p = *pp;
    uint32_t x[NSTATES];
    memcpy(x, states, sizeof x);
    size_t i = 0;
    for (; i + NSTATES <= n && end - p >= 2 * NSTATES; i += NSTATES)
        for (int j = 0; j < NSTATES; j++) DEC_GET(x[j], out[i + j]);
    memcpy(states, x, sizeof x);
    *pp = p;
    return i;
}
#undef DEC_GET

/* Decode a payload into out[0..n); returns NULL on success, else what is wrong. */
static const char *decode_plane(const uint8_t *in, size_t len, uint8_t *out, size_t n, int simd) {
    if (len < 2) return "truncated rANS header";
    if (in[0] == 1) {
        if (len != 2) return "bad constant plane";
        memset(out, in[1], n);
        return NULL;
    }
    if (in[0] != 0) return "unknown rANS mode";
    if (in[1] != SCALE) return "unsupported rANS scale";
    if (len < HEADER_FIXED) return "truncated rANS header";
    const uint8_t *bitmap = in + 2;
    const uint8_t *p = in + HEADER_FIXED;
    const uint8_t *end = in + len;
    uint32_t freq[256], start[256];
    uint32_t total = 0;
    for (int s = 0; s < 256; s++) {
        freq[s] = start[s] = 0;
        if (!(bitmap[s >> 3] & (1u << (s & 7)))) continue;
        if (end - p < 2) return "truncated rANS frequency table";
        freq[s] = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
        p += 2;
        if (!freq[s] || freq[s] >= TOTAL) return "bad frequency in rANS table";
        start[s] = total;
        total += freq[s];
        if (total > TOTAL) return "rANS frequencies exceed the total";
    }
    if (total != TOTAL) return "rANS frequencies do not sum to the total";
    if (end - p < 4 * NSTATES) return "truncated rANS states";
    uint32_t x[NSTATES];
    memcpy(x, p, sizeof x);
    p += sizeof x;
    for (int j = 0; j < NSTATES; j++)
        if (x[j] < RANS_L || x[j] >= (RANS_L << 16)) return "bad rANS state";
    /* One entry per slot: symbol | freq << 8 | (slot - start) << 20 (12 bits each). */
    uint32_t *table = (uint32_t *)malloc(sizeof(uint32_t) * TOTAL);
    if (!table) return "out of memory";
    for (int s = 0; s < 256; s++)
        for (uint32_t k = 0; k < freq[s]; k++) table[start[s] + k] = (uint32_t)s | (freq[s] << 8) | (k << 20);
    const char *err = NULL;
#if HAVE_AVX2_PATH
    size_t i = simd ? decode_groups_avx2(table, x, &p, end, out, n) : decode_loop(table, x, &p, end, out, n);
#else
    size_t i = decode_loop(table, x, &p, end, out, n);
#endif
    for (; i < n; i++) {   /* the last few symbols, checking every read */
        uint32_t *xs = &x[i % NSTATES];
        uint32_t e = table[*xs & (TOTAL - 1)];
        out[i] = (uint8_t)e;
        *xs = ((e >> 8) & 0xfff) * (*xs >> SCALE) + (e >> 20);
        if (*xs < RANS_L) {
            if (end - p < 2) { err = "truncated rANS stream"; goto done; }
            *xs = (*xs << 16) | (uint32_t)p[0] | ((uint32_t)p[1] << 8);
            p += 2;
        }
    }
    if (p != end) { err = "trailing bytes after the rANS stream"; goto done; }
    for (int j = 0; j < NSTATES; j++)
        if (x[j] != RANS_L) { err = "rANS stream does not end in its start state"; goto done; }
done:
    free(table);
    return err;
}

/* Count elements of ITEM (2, 4 or 8) bytes: the low bytes to low (ITEM - 2 per element), the sign
 * with the top 7 mantissa bits to sgn, the exponent byte to ex. No histogram in this loop, so the
 * compiler vectorises it. */
static inline __attribute__((always_inline)) void split_float_n(const uint8_t *restrict raw, size_t count,
        const size_t ITEM, uint8_t *restrict low, uint8_t *restrict sgn, uint8_t *restrict ex) {
    const size_t LOW = ITEM - 2;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = raw + i * ITEM;
        uint16_t top;
        memcpy(&top, e + LOW, 2);
        if (LOW) memcpy(low + i * LOW, e, LOW);
        sgn[i] = (uint8_t)(((top >> 8) & 0x80) | (top & 0x7f));
        ex[i] = (uint8_t)(top >> 7);
    }
}

/* The planes of count float elements, and the exponent plane's histogram. */
static void split_float(const uint8_t *raw, size_t count, size_t itemsize, uint8_t *low, uint8_t *sgn,
                        uint8_t *ex, uint64_t *count_ex) {
    if (itemsize == 2) split_float_n(raw, count, 2, low, sgn, ex);
    else if (itemsize == 4) split_float_n(raw, count, 4, low, sgn, ex);
    else split_float_n(raw, count, 8, low, sgn, ex);
    histogram(ex, count, count_ex);
}

static inline __attribute__((always_inline)) void join_float_n(const uint8_t *restrict low, const uint8_t *restrict sgn,
        const uint8_t *restrict ex, size_t count, const size_t ITEM, uint8_t *restrict raw) {
    const size_t LOW = ITEM - 2;
    for (size_t i = 0; i < count; i++) {
        uint8_t *e = raw + i * ITEM;
        uint16_t top = (uint16_t)(((uint16_t)ex[i] << 7) | ((uint16_t)(sgn[i] & 0x80) << 8) | (sgn[i] & 0x7f));
        if (LOW) memcpy(e, low + i * LOW, LOW);
        memcpy(e + LOW, &top, 2);
    }
}

/* The inverse of split_float. */
static void join_float(const uint8_t *low, const uint8_t *sgn, const uint8_t *ex, size_t count, size_t itemsize,
                       uint8_t *raw) {
    if (itemsize == 2) join_float_n(low, sgn, ex, count, 2, raw);
    else if (itemsize == 4) join_float_n(low, sgn, ex, count, 4, raw);
    else join_float_n(low, sgn, ex, count, 8, raw);
}

/* ------------------------------------------------------------------------------------- Python */

static PyObject *RansError;

PyDoc_STRVAR(encode_doc,
"encode(plane, simd=True) -> bytes\n\n"
"The order-0 rANS payload of a non-empty byte buffer. simd=False forces the scalar loop (the\n"
"payload is the same either way; the tests compare them).");

static PyObject *py_encode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    int simd = 1;
    if (!PyArg_ParseTuple(args, "y*|p:encode", &view, &simd)) return NULL;
    size_t n = (size_t)view.len;
    if (n == 0 || n > MAX_PLANE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, n ? "plane too large for rANS (over 2^31 bytes): code it in smaller chunks"
                                            : "cannot rANS-code an empty plane");
        return NULL;
    }
    uint8_t *buf = (uint8_t *)malloc(rans_bound(n));
    uint16_t *scratch = (uint16_t *)malloc(2 * scratch_words(n));
    if (!buf || !scratch) {
        free(buf);
        free(scratch);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    size_t out_len;
    Py_BEGIN_ALLOW_THREADS
    uint64_t count[256];
    histogram((const uint8_t *)view.buf, n, count);
    out_len = encode_plane((const uint8_t *)view.buf, n, count, buf, scratch, simd && avx2_enabled);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)out_len);
    free(buf);
    free(scratch);
    return result;
}

PyDoc_STRVAR(decode_doc,
"decode(payload, out, simd=True) -> None\n\n"
"Decode an encode() payload into the writable buffer out, whose length is the plane's.\n"
"Raises RansError when the payload is damaged. simd=False forces the scalar loop.");

static PyObject *py_decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer in, out;
    int simd = 1;
    if (!PyArg_ParseTuple(args, "y*w*|p:decode", &in, &out, &simd)) return NULL;
    const char *err;
    Py_BEGIN_ALLOW_THREADS
    err = decode_plane((const uint8_t *)in.buf, (size_t)in.len, (uint8_t *)out.buf, (size_t)out.len, simd && avx2_enabled);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    if (err) {
        PyErr_SetString(RansError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(encode_float_doc,
"encode_float(raw, itemsize) -> (low, sign_mantissa, exponent, payload)\n\n"
"Split float elements (itemsize 2, 4 or 8) into their planes and rANS-code the exponent plane;\n"
"low is empty for 2-byte floats. payload is the exponent plane's rANS payload, or None when\n"
"coding would not shrink it.");

static PyObject *py_encode_float(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*n:encode_float", &view, &itemsize)) return NULL;
    if ((itemsize != 2 && itemsize != 4 && itemsize != 8) || view.len == 0 || view.len % itemsize ||
        (size_t)(view.len / itemsize) > MAX_PLANE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "encode_float needs a non-empty whole number of 2-, 4- or 8-byte elements, "
                                          "at most 2^31 of them");
        return NULL;
    }
    size_t count = (size_t)(view.len / itemsize);
    PyObject *low = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(count * (size_t)(itemsize - 2)));
    PyObject *sgn = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count);
    PyObject *ex = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count);
    uint8_t *buf = (uint8_t *)malloc(rans_bound(count));
    uint16_t *scratch = (uint16_t *)malloc(2 * scratch_words(count));
    if (!low || !sgn || !ex || !buf || !scratch) {
        Py_XDECREF(low);
        Py_XDECREF(sgn);
        Py_XDECREF(ex);
        free(buf);
        free(scratch);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    size_t out_len;
    uint8_t *exp_plane = (uint8_t *)PyBytes_AS_STRING(ex);
    Py_BEGIN_ALLOW_THREADS
    uint64_t hist[256];
    split_float((const uint8_t *)view.buf, count, (size_t)itemsize, (uint8_t *)PyBytes_AS_STRING(low),
                (uint8_t *)PyBytes_AS_STRING(sgn), exp_plane, hist);
    out_len = encode_plane(exp_plane, count, hist, buf, scratch, avx2_enabled);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    free(scratch);
    PyObject *payload = Py_None;   /* None unless coding shrinks the plane */
    Py_INCREF(payload);
    if (out_len < count) {
        Py_DECREF(payload);
        payload = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)out_len);
    }
    free(buf);
    if (!payload) {
        Py_DECREF(low);
        Py_DECREF(sgn);
        Py_DECREF(ex);
        return NULL;
    }
    return Py_BuildValue("(NNNN)", low, sgn, ex, payload);
}

PyDoc_STRVAR(join_float_doc,
"join_float(low, sign_mantissa, exponent, out, itemsize) -> None\n\n"
"The inverse of the split in encode_float, with the exponent plane already decoded.");

static PyObject *py_join_float(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer low, sgn, ex, out;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*y*y*w*n:join_float", &low, &sgn, &ex, &out, &itemsize)) return NULL;
    const char *err = NULL;
    size_t count = 0;
    if (itemsize != 2 && itemsize != 4 && itemsize != 8) err = "itemsize must be 2, 4 or 8";
    else {
        count = (size_t)(out.len / itemsize);
        if (out.len % itemsize || (size_t)sgn.len != count || (size_t)ex.len != count ||
            (size_t)low.len != count * (size_t)(itemsize - 2))
            err = "plane lengths do not match the output";
    }
    if (!err) {
        Py_BEGIN_ALLOW_THREADS
        join_float((const uint8_t *)low.buf, (const uint8_t *)sgn.buf, (const uint8_t *)ex.buf, count,
                   (size_t)itemsize, (uint8_t *)out.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&low);
    PyBuffer_Release(&sgn);
    PyBuffer_Release(&ex);
    PyBuffer_Release(&out);
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, encode_doc},
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {"encode_float", py_encode_float, METH_VARARGS, encode_float_doc},
    {"join_float", py_join_float, METH_VARARGS, join_float_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rans", "Float byte planes and order-0 rANS for the checkpoint store.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rans(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    avx2_enabled = detect_avx2();
    if (PyModule_AddIntConstant(m, "AVX2", avx2_enabled) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    RansError = PyErr_NewException("deepdive.engine.ckpt._rans.RansError", PyExc_ValueError, NULL);
    if (!RansError || PyModule_AddObjectRef(m, "RansError", RansError) < 0) {
        Py_XDECREF(RansError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
