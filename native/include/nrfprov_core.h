/*
 * nrfprov_core.h - streaming, bounded-memory extractor for the AWS IoT Fleet Provisioning reply
 * to CreateKeysAndCertificate / CreateCertificateFromCsr (payload format "json" or "cbor"), and for
 * the "rejected" reply of any Fleet Provisioning operation.
 *
 * C99, no malloc, no globals, no I/O. The caller owns every byte of memory: one
 * struct nrfprov_extractor (see nrfprov_state_size()) and one buffer per field it wants.
 * Feed the message in chunks of any size (1 byte is fine), then call nrfprov_finish().
 *
 * This header is also the cffi cdef of the Python binding (native/build_ffi.py): the text between
 * the two "cffi-cdef" marker comments may contain only declarations and "#define NAME <integer>"
 * lines, because that is all cffi's cdef parser accepts.
 *
 * Full documentation: native/README.md.
 */
#ifndef NRFPROV_CORE_H
#define NRFPROV_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-cdef-begin */

/* Version stamp: major << 16 | minor << 8 | patch. The Python wrapper refuses a library whose
 * nrfprov_version() differs from this header's value or from the version it was written for. */
#define NRFPROV_CORE_VERSION 0x00010200

/* Whole message limit: the AWS IoT Core MQTT PUBLISH payload limit is 128 KB (AWS IoT Core
 * quotas, "Message size"). One more byte gives NRFPROV_E_TOO_LARGE. */
#define NRFPROV_MAX_MESSAGE 131072

/* Per-field limits (bytes of UTF-8 after unescaping). A caller buffer may be smaller; the
 * effective limit is the smaller of the two.
 *   PEM fields: a credential is written with one AT%CMNG command, which must fit the modem's
 *   4096-byte AT command buffer [nRF91 AT Commands Reference, %CMNG]; a longer PEM can never be
 *   written, so it is refused here.
 *   certificateId: 64 hex characters [AWS IoT API Reference, CreateKeysAndCertificate].
 *   certificateOwnershipToken: ~450 characters observed; 2048 leaves room for growth.
 *   errorCode / errorMessage: short identifiers and sentences in AWS replies; bounded so a
 *   hostile reply cannot make the device store an arbitrary amount. */
#define NRFPROV_MAX_PEM 4096
#define NRFPROV_MAX_CERTIFICATE_ID 64
#define NRFPROV_MAX_TOKEN 2048
#define NRFPROV_MAX_ERROR_CODE 128
#define NRFPROV_MAX_ERROR_MESSAGE 1024

/* Sum of the six string-field limits: the size of one block that holds every field at its limit
 * (see nrfprov_set_all_buffers()). */
#define NRFPROV_ALL_FIELDS_SIZE 11456

/* Maximum nesting of arrays/objects (maps), counting the top-level object as 1. Each level costs
 * 5 bytes of state. Deeper input gives NRFPROV_E_DEPTH. */
#define NRFPROV_MAX_DEPTH 32

/* Longest key that is compared with the known field names (the longest is
 * "certificateOwnershipToken", 25 bytes). Longer keys are unknown keys and are skipped. */
#define NRFPROV_KEY_BUF 32

/* Payload formats (the <fmt> of the Fleet Provisioning topics). */
enum nrfprov_format {
    NRFPROV_FORMAT_JSON = 0,
    NRFPROV_FORMAT_CBOR = 1
};

/* Fields, by index. The first six are strings delivered into caller buffers; statusCode is an
 * integer read with nrfprov_status_code(). */
enum nrfprov_field {
    NRFPROV_FIELD_CERTIFICATE_ID = 0,
    NRFPROV_FIELD_CERTIFICATE_PEM = 1,
    NRFPROV_FIELD_PRIVATE_KEY = 2,
    NRFPROV_FIELD_OWNERSHIP_TOKEN = 3,
    NRFPROV_FIELD_ERROR_CODE = 4,
    NRFPROV_FIELD_ERROR_MESSAGE = 5,
    NRFPROV_FIELD_STATUS_CODE = 6,
    NRFPROV_FIELD_COUNT = 7,
    NRFPROV_STRING_FIELD_COUNT = 6,
    NRFPROV_FIELD_NONE = -1
};

/* Status codes. 0 is success; every error is negative and sticky: once a call fails, every later
 * nrfprov_feed()/nrfprov_finish() returns the same code, and nrfprov_error_offset() tells the
 * byte offset (from the start of the message) where it was detected. */
enum nrfprov_status {
    NRFPROV_OK = 0,
    NRFPROV_E_ARG = -1,            /* NULL pointer, unknown format/field, wrong state size */
    NRFPROV_E_STATE = -2,          /* feed/finish after finish, buffer set after feeding began */
    NRFPROV_E_SYNTAX = -3,         /* byte not allowed here (JSON grammar, CBOR break misplaced) */
    NRFPROV_E_TRUNCATED = -4,      /* finish() before the top-level object was complete */
    NRFPROV_E_TOO_LARGE = -5,      /* more than NRFPROV_MAX_MESSAGE bytes fed */
    NRFPROV_E_FIELD_TOO_LONG = -6, /* a known field exceeds its limit; see nrfprov_error_size() */
    NRFPROV_E_DEPTH = -7,          /* nesting deeper than NRFPROV_MAX_DEPTH */
    NRFPROV_E_UTF8 = -8,           /* invalid UTF-8 in a string */
    NRFPROV_E_ESCAPE = -9,         /* bad JSON escape, lone or reversed UTF-16 surrogate */
    NRFPROV_E_DUPLICATE = -10,     /* a known field appears twice at top level */
    NRFPROV_E_TYPE = -11,          /* a known field has the wrong type (e.g. number for a PEM) */
    NRFPROV_E_NOT_OBJECT = -12,    /* the top-level value is not an object / map */
    NRFPROV_E_RANGE = -13,         /* statusCode outside int64 */
    NRFPROV_E_TRAILING = -14,      /* bytes after the top-level value (JSON: non-whitespace) */
    NRFPROV_E_CBOR_INVALID = -15   /* reserved additional info, bad indefinite-length chunk,
                                      simple value < 32 in two bytes */
};

/* Internal per-field slot. Treat as opaque; read it through the accessor functions. */
struct nrfprov_slot {
    uint8_t *buf;      /* caller buffer or NULL (value is then validated and counted only) */
    size_t cap;        /* caller capacity */
    size_t len;        /* bytes of the value seen so far */
    uint8_t present;   /* 1 once the key was seen */
};

/* The whole parser state. Allocate it anywhere (static, stack, pool); it holds no pointers to
 * itself, so it may be copied before nrfprov_feed() is first called. Treat the members as
 * private: they may change between versions, and the wrapper checks sizeof against
 * nrfprov_state_size(). */
struct nrfprov_extractor {
    uint32_t size_check;        /* sizeof(struct nrfprov_extractor) at init, catches mismatches */
    int32_t status;             /* sticky status */
    uint32_t offset;            /* bytes consumed so far */
    uint32_t error_offset;
    uint32_t error_size;        /* for NRFPROV_E_FIELD_TOO_LONG: full length of the value */
    int32_t error_field;
    uint32_t value_start;       /* offset of the first byte of the current value */
    uint8_t format;
    uint8_t finished;
    uint8_t state;              /* lexer state */
    uint8_t substate;           /* literal index, hex digit count, number phase ... */
    uint8_t depth;              /* open containers */
    uint8_t done;               /* top-level value complete */
    uint8_t sink;               /* where string bytes go: discard / key / field */
    int8_t cur_field;           /* field of the current top-level key, or NRFPROV_FIELD_NONE */
    uint8_t key_len;
    uint8_t key_overflow;
    uint8_t utf8_need;          /* continuation bytes still expected */
    uint8_t utf8_lo;            /* allowed range of the next continuation byte */
    uint8_t utf8_hi;
    uint8_t num_flags;          /* JSON number: negative / fraction / exponent seen */
    uint8_t cbor_major;
    uint8_t cbor_ai;
    uint8_t cbor_need;          /* argument bytes still to read */
    uint8_t cbor_indef_str;     /* inside an indefinite-length string: 0, 2 or 3 (major) */
    uint8_t cbor_str_major;     /* major type of the string being read */
    uint8_t key_expected;       /* JSON: next string at depth 1 is a key */
    uint8_t pad_[2];
    uint32_t hi_surrogate;      /* JSON: pending high surrogate, 0 if none */
    uint32_t codepoint;         /* JSON: \uXXXX being read */
    uint64_t cbor_arg;          /* CBOR: argument being read */
    uint64_t cbor_left;         /* CBOR: bytes left in the current definite string */
    uint64_t status_magnitude;  /* statusCode being read (absolute value) */
    int64_t status_code;
    uint8_t status_present;
    uint8_t pad2_[7];
    uint32_t level_left[NRFPROV_MAX_DEPTH];  /* CBOR: items left in a definite container */
    uint8_t level_flags[NRFPROV_MAX_DEPTH];  /* array/map, indefinite, expecting value */
    uint8_t key[NRFPROV_KEY_BUF];
    struct nrfprov_slot slots[NRFPROV_STRING_FIELD_COUNT];
};

/* Everything a caller reads after a message, filled by one call (nrfprov_result()): a wrapper
 * across an FFI pays one round trip instead of one per accessor. */
struct nrfprov_result {
    int32_t status;                           /* NRFPROV_OK or the sticky error (nrfprov_error()) */
    uint32_t present;                         /* nrfprov_present_mask() */
    uint32_t len[NRFPROV_STRING_FIELD_COUNT]; /* nrfprov_field_len() of each string field */
    int64_t status_code;                      /* nrfprov_status_code() */
};

/* Version of the compiled library (compare with NRFPROV_CORE_VERSION). */
uint32_t nrfprov_version(void);

/* sizeof(struct nrfprov_extractor) as compiled into the library. */
size_t nrfprov_state_size(void);

/* Limit of a field (NRFPROV_MAX_*), or 0 for an unknown/non-string field. */
size_t nrfprov_field_max(int field);

/* The field's key as it appears in the message ("certificatePem" ...), or NULL. */
const char *nrfprov_field_name(int field);

/* Short English name of a status code, e.g. "NRFPROV_E_SYNTAX". Never NULL. */
const char *nrfprov_status_name(int status);

/* Prepare *ex for one message. state_size must be sizeof(struct nrfprov_extractor). */
int nrfprov_init(struct nrfprov_extractor *ex, size_t state_size, int format);

/* Give a string field a destination buffer (call after init, before the first feed).
 * Values are written without a terminating NUL; read the length with nrfprov_field_len().
 * A field without a buffer is still parsed, validated, length-checked and duplicate-checked. */
int nrfprov_set_buffer(struct nrfprov_extractor *ex, int field, uint8_t *buf, size_t cap);

/* Give every string field its buffer from one block of at least NRFPROV_ALL_FIELDS_SIZE bytes,
 * laid out in enum order, each field at offset sum(nrfprov_field_max(earlier fields)). */
int nrfprov_set_all_buffers(struct nrfprov_extractor *ex, uint8_t *block, size_t size);

/* Consume len bytes (len may be 0). Returns NRFPROV_OK or a negative status. */
int nrfprov_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len);

/* End of message. NRFPROV_OK if exactly one complete top-level object/map was fed. */
int nrfprov_finish(struct nrfprov_extractor *ex);

/* Results, valid after nrfprov_finish() returned NRFPROV_OK. */
int nrfprov_field_present(const struct nrfprov_extractor *ex, int field);
/* Bit (1u << field) set for every field present, statusCode included. */
unsigned int nrfprov_present_mask(const struct nrfprov_extractor *ex);
size_t nrfprov_field_len(const struct nrfprov_extractor *ex, int field);
int64_t nrfprov_status_code(const struct nrfprov_extractor *ex);

/* All of the above in one call (valid whenever the accessors are). NRFPROV_E_ARG for a NULL or
 * uninitialised state or a NULL out; otherwise NRFPROV_OK, and out->status says how the message went. */
int nrfprov_result(const struct nrfprov_extractor *ex, struct nrfprov_result *out);

/* Zero what the parser wrote into the caller's field buffers: the first min(len, capacity) bytes of
 * each, which is every byte it ever writes there. Call it after copying the values out, on success
 * and on error alike, so key material does not linger; lengths and status stay readable. Costs
 * what was written, not the buffers' size. NRFPROV_E_ARG for a NULL or uninitialised state. */
int nrfprov_wipe(struct nrfprov_extractor *ex);

/* One whole message in one call: nrfprov_init() + nrfprov_set_all_buffers(block, block_size) +
 * nrfprov_feed(data, len) + nrfprov_finish() + nrfprov_result(out). Returns the first failing
 * status (out is then filled too, unless the arguments were refused with NRFPROV_E_ARG); the error
 * accessors work on *ex as after the separate calls. Wipe with nrfprov_wipe() afterwards. */
int nrfprov_extract(struct nrfprov_extractor *ex, size_t state_size, int format, uint8_t *block,
                    size_t block_size, const uint8_t *data, size_t len, struct nrfprov_result *out);

/* Error details, valid after a call returned a negative status. */
int nrfprov_error(const struct nrfprov_extractor *ex);
size_t nrfprov_error_offset(const struct nrfprov_extractor *ex);
int nrfprov_error_field(const struct nrfprov_extractor *ex);
size_t nrfprov_error_size(const struct nrfprov_extractor *ex);

/* cffi-cdef-end */

#ifdef __cplusplus
}
#endif

#endif /* NRFPROV_CORE_H */
