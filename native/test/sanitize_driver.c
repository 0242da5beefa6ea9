/*
 * sanitize_driver.c - runs the extractor under AddressSanitizer + UndefinedBehaviorSanitizer.
 *
 *   sanitize_driver [-n MUTATIONS] [-s SEED] FILE...     (FILE ending in .cbor is CBOR, else JSON)
 *
 * For every seed file, and for MUTATIONS mutated copies of it (bit flips, byte insert/delete,
 * truncation, splices with other seeds), the message is parsed whole, in random chunk sizes and
 * (for the seeds) one byte at a time, and the outcomes (status, error offset, every field) must be
 * identical. Every chunk, every field buffer and the state itself are separate exact-size heap
 * blocks, so ASan reports any read or write one byte outside them. A second run gives the fields
 * small capacities to exercise the capacity paths. The one-call nrfprov_extract() must agree with
 * the separate calls, nrfprov_result() with the accessors, and after nrfprov_wipe() every field buffer
 * must be all zero again. Exit status 0 = clean.
 *
 * The driver uses malloc and stdio; the core under test does not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nrfprov_core.h"

struct outcome {
    int status;
    size_t error_offset;
    int error_field;
    size_t error_size;
    int present[NRFPROV_FIELD_COUNT];
    size_t len[NRFPROV_STRING_FIELD_COUNT];
    uint8_t data[NRFPROV_STRING_FIELD_COUNT][NRFPROV_MAX_PEM];
    int64_t status_code;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces with the same -s */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void die(const char *what, const char *name, size_t iteration)
{
    fprintf(stderr, "sanitize_driver: %s (input %s, mutation %zu, seed state %llu)\n", what, name, iteration,
            (unsigned long long)rng_state);
    exit(2);
}

/* nrfprov_result() agrees with the accessors, and nrfprov_wipe() leaves every (calloc-zeroed) field
 * buffer all zero again: the bytes it clears are all the bytes the parser wrote, on success and error. */
static void check_result_and_wipe(struct nrfprov_extractor *ex, const struct outcome *out, uint8_t **bufs,
                                  const size_t *caps)
{
    struct nrfprov_result res;
    size_t i;
    int f;

    if (nrfprov_result(ex, &res) != NRFPROV_OK || nrfprov_result(ex, NULL) != NRFPROV_E_ARG ||
        res.status != nrfprov_error(ex) || res.present != nrfprov_present_mask(ex) ||
        res.status_code != nrfprov_status_code(ex)) {
        die("nrfprov_result() disagrees with the accessors", "-", 0);
    }
    if (out->status == NRFPROV_OK && res.status != NRFPROV_OK) {
        die("nrfprov_result() reports an error after a successful finish", "-", 0);
    }
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        if (res.len[f] != nrfprov_field_len(ex, f)) {
            die("nrfprov_result() length disagrees with nrfprov_field_len()", "-", 0);
        }
    }
    if (nrfprov_wipe(ex) != NRFPROV_OK || nrfprov_wipe(NULL) != NRFPROV_E_ARG) {
        die("nrfprov_wipe() failed", "-", 0);
    }
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        for (i = 0; i < caps[f]; i++) {
            if (bufs[f][i] != 0) {
                die("nrfprov_wipe() left a written byte in a field buffer", "-", 0);
            }
        }
    }
}

/* mode: 0 whole, 1 byte by byte, 2 random chunks */
static void run(const uint8_t *msg, size_t len, int format, int mode, size_t cap_override, struct outcome *out)
{
    struct nrfprov_extractor *ex = malloc(sizeof *ex);
    uint8_t *bufs[NRFPROV_STRING_FIELD_COUNT];
    size_t caps[NRFPROV_STRING_FIELD_COUNT];
    size_t pos = 0;
    int rc;
    int f;

    if (ex == NULL) {
        die("out of memory", "-", 0);
    }
    memset(out, 0, sizeof *out);
    if (nrfprov_init(ex, sizeof *ex, format) != NRFPROV_OK) {
        die("init failed", "-", 0);
    }
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        caps[f] = cap_override != 0 ? cap_override : nrfprov_field_max(f);
        bufs[f] = calloc(1, caps[f]); /* zeroed, so the wipe check below sees every stray byte */
        if (bufs[f] == NULL || nrfprov_set_buffer(ex, f, bufs[f], caps[f]) != NRFPROV_OK) {
            die("set_buffer failed", "-", 0);
        }
    }
    rc = NRFPROV_OK;
    while (rc == NRFPROV_OK && pos < len) {
        size_t n = len - pos;
        uint8_t *chunk;
        if (mode == 1) {
            n = 1;
        } else if (mode == 2) {
            size_t want = (size_t)(rng() % 97u) + 1u;
            n = want < n ? want : n;
        }
        chunk = malloc(n);
        if (chunk == NULL) {
            die("out of memory", "-", 0);
        }
        memcpy(chunk, msg + pos, n);
        rc = nrfprov_feed(ex, chunk, n);
        free(chunk);
        pos += n;
    }
    if (rc == NRFPROV_OK) {
        rc = nrfprov_feed(ex, NULL, 0);
    }
    if (rc == NRFPROV_OK) {
        rc = nrfprov_finish(ex);
        if (rc == NRFPROV_OK && nrfprov_finish(ex) != NRFPROV_E_STATE) {
            die("second finish did not report NRFPROV_E_STATE", "-", 0);
        }
    } else if (nrfprov_feed(ex, msg, len) != rc || nrfprov_finish(ex) != rc) {
        die("error is not sticky", "-", 0);
    }
    out->status = rc;
    if (rc != NRFPROV_OK) {
        if (nrfprov_error(ex) != rc) {
            die("nrfprov_error() disagrees with the returned status", "-", 0);
        }
        out->error_offset = nrfprov_error_offset(ex);
        out->error_field = nrfprov_error_field(ex);
        out->error_size = nrfprov_error_size(ex);
        if (out->error_offset > len) {
            die("error offset beyond the input", "-", 0);
        }
    } else {
        for (f = 0; f < NRFPROV_FIELD_COUNT; f++) {
            out->present[f] = nrfprov_field_present(ex, f);
        }
        for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
            out->len[f] = nrfprov_field_len(ex, f);
            if (out->len[f] > caps[f]) {
                die("field longer than its buffer", "-", 0);
            }
            memcpy(out->data[f], bufs[f], out->len[f]);
        }
        out->status_code = nrfprov_status_code(ex);
    }
    check_result_and_wipe(ex, out, bufs, caps);
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        free(bufs[f]);
    }
    free(ex);
}

/* The one-call path (nrfprov_extract) over one exact-size block holding all six fields. */
static void run_extract(const uint8_t *msg, size_t len, int format, struct outcome *out)
{
    struct nrfprov_extractor *ex = malloc(sizeof *ex);
    uint8_t *block = calloc(1, NRFPROV_ALL_FIELDS_SIZE);
    uint8_t *bufs[NRFPROV_STRING_FIELD_COUNT];
    size_t caps[NRFPROV_STRING_FIELD_COUNT];
    struct nrfprov_result res;
    size_t at = 0;
    int rc;
    int f;

    if (ex == NULL || block == NULL) {
        die("out of memory", "-", 0);
    }
    memset(out, 0, sizeof *out);
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        bufs[f] = block + at;
        caps[f] = nrfprov_field_max(f);
        at += caps[f];
    }
    rc = nrfprov_extract(ex, sizeof *ex, format, block, NRFPROV_ALL_FIELDS_SIZE, msg, len, &res);
    if (res.status != rc) {
        die("nrfprov_extract() result status differs from its return value", "-", 0);
    }
    out->status = rc;
    if (rc != NRFPROV_OK) {
        out->error_offset = nrfprov_error_offset(ex);
        out->error_field = nrfprov_error_field(ex);
        out->error_size = nrfprov_error_size(ex);
    } else {
        for (f = 0; f < NRFPROV_FIELD_COUNT; f++) {
            out->present[f] = (res.present >> f) & 1u;
        }
        for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
            out->len[f] = res.len[f];
            if (out->len[f] > caps[f]) {
                die("field longer than its buffer", "-", 0);
            }
            memcpy(out->data[f], bufs[f], out->len[f]);
        }
        out->status_code = res.status_code;
    }
    check_result_and_wipe(ex, out, bufs, caps);
    free(block);
    free(ex);
}

static int same(const struct outcome *a, const struct outcome *b)
{
    int f;
    if (a->status != b->status) {
        return 0;
    }
    if (a->status != NRFPROV_OK) {
        return a->error_offset == b->error_offset && a->error_field == b->error_field &&
               a->error_size == b->error_size;
    }
    for (f = 0; f < NRFPROV_STRING_FIELD_COUNT; f++) {
        if (a->present[f] != b->present[f] || a->len[f] != b->len[f] ||
            memcmp(a->data[f], b->data[f], a->len[f]) != 0) {
            return 0;
        }
    }
    return a->present[NRFPROV_FIELD_STATUS_CODE] == b->present[NRFPROV_FIELD_STATUS_CODE] &&
           a->status_code == b->status_code;
}

static void check(const uint8_t *msg, size_t len, int format, int bytewise, const char *name, size_t it)
{
    static struct outcome whole, other; /* large: keep them off the stack */
    run(msg, len, format, 0, 0, &whole);
    run(msg, len, format, 2, 0, &other);
    if (!same(&whole, &other)) {
        die("random chunks differ from whole", name, it);
    }
    run_extract(msg, len, format, &other);
    if (!same(&whole, &other)) {
        die("nrfprov_extract() differs from init/feed/finish", name, it);
    }
    if (bytewise) {
        run(msg, len, format, 1, 0, &other);
        if (!same(&whole, &other)) {
            die("byte-by-byte differs from whole", name, it);
        }
    }
    /* Small capacities: only the capacity paths change, and nothing is written out of bounds. */
    run(msg, len, format, 2, 5, &other);
    if (whole.status == NRFPROV_E_FIELD_TOO_LONG && other.status == NRFPROV_OK) {
        die("small buffers accepted a value the full buffers refused", name, it);
    }
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *data;
    long size;
    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        die("cannot read", path, 0);
    }
    data = malloc((size_t)size + 1u);
    if (data == NULL || fread(data, 1, (size_t)size, fp) != (size_t)size) {
        die("cannot read", path, 0);
    }
    fclose(fp);
    *len = (size_t)size;
    return data;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap, const uint8_t *other, size_t other_len)
{
    int k;
    int rounds = (int)(rng() % 4u) + 1;
    for (k = 0; k < rounds; k++) {
        size_t i = len != 0 ? (size_t)(rng() % len) : 0;
        switch (rng() % 6u) {
        case 0:
            if (len != 0) {
                buf[i] ^= (uint8_t)(1u << (rng() % 8u));
            }
            break;
        case 1:
            if (len != 0) {
                memmove(buf + i, buf + i + 1, len - i - 1);
                len--;
            }
            break;
        case 2:
            if (len < cap) {
                memmove(buf + i + 1, buf + i, len - i);
                buf[i] = (uint8_t)rng();
                len++;
            }
            break;
        case 3:
            len = i;
            break;
        case 4: { /* splice the tail of another input */
            size_t j = other_len != 0 ? (size_t)(rng() % other_len) : 0;
            size_t n = other_len - j;
            if (i + n > cap) {
                n = cap - i;
            }
            memcpy(buf + i, other + j, n);
            len = i + n;
            break;
        }
        default: {
            static const uint8_t special[] = {'{', '}', '[', ']', '"', ':', ',', '\\', 'u', 0xff, 0x7f, 0x9f,
                                              0xbf, 0x5f, 0x1b, 0xf8, 0xc0, 0xed, 0x00};
            if (len != 0) {
                buf[i] = special[rng() % sizeof special];
            }
            break;
        }
        }
    }
    return len;
}

int main(int argc, char **argv)
{
    size_t mutations = 200;
    int first = 1;
    int i;
    uint8_t *scratch;
    size_t cap = (size_t)NRFPROV_MAX_MESSAGE + 64u;

    while (first + 1 < argc && argv[first][0] == '-') {
        if (strcmp(argv[first], "-n") == 0) {
            mutations = (size_t)strtoul(argv[first + 1], NULL, 10);
        } else if (strcmp(argv[first], "-s") == 0) {
            rng_state = strtoull(argv[first + 1], NULL, 10) | 1u;
        } else {
            break;
        }
        first += 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-n MUTATIONS] [-s SEED] FILE...\n", argv[0]);
        return 2;
    }
    if (nrfprov_version() != NRFPROV_CORE_VERSION || nrfprov_state_size() != sizeof(struct nrfprov_extractor)) {
        die("version or state size mismatch", "-", 0);
    }
    scratch = malloc(cap);
    if (scratch == NULL) {
        die("out of memory", "-", 0);
    }
    for (i = first; i < argc; i++) {
        size_t len, other_len, it;
        const char *name = argv[i];
        size_t nlen = strlen(name);
        int format = nlen > 5 && strcmp(name + nlen - 5, ".cbor") == 0 ? NRFPROV_FORMAT_CBOR : NRFPROV_FORMAT_JSON;
        uint8_t *msg = read_file(name, &len);
        uint8_t *other = read_file(argv[first + (int)(rng() % (uint64_t)(argc - first))], &other_len);
        if (len > cap) {
            len = cap;
        }
        check(msg, len, format, len <= 16384, name, 0);
        for (it = 1; it <= mutations; it++) {
            size_t mlen;
            memcpy(scratch, msg, len);
            mlen = mutate(scratch, len, cap, other, other_len);
            check(scratch, mlen, format, mlen <= 512, name, it);
        }
        free(msg);
        free(other);
    }
    free(scratch);
    printf("sanitize_driver: %d inputs x %zu mutations: clean\n", argc - first, mutations);
    return 0;
}
