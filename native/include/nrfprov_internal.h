/*
 * nrfprov_internal.h - shared helpers of the JSON and CBOR front ends. Not part of the API.
 * (Kept in include/ so that the Makefile's rebuild wildcard, the include dir, sees it.)
 */
#ifndef NRFPROV_INTERNAL_H
#define NRFPROV_INTERNAL_H

#include "nrfprov_core.h"

/* Where the bytes of the string being read go. */
enum nrfprov_sink {
    NRFPROV_SINK_DISCARD = 0,  /* unknown field, nested value: validate only */
    NRFPROV_SINK_KEY = 1,      /* a key of the top-level object: compare with the field names */
    NRFPROV_SINK_FIELD = 2     /* the value of a known string field: copy to the caller buffer */
};

/* level_flags bits */
#define NRFPROV_LF_MAP 0x01u    /* object / map (else array) */
#define NRFPROV_LF_INDEF 0x02u  /* CBOR indefinite length */
#define NRFPROV_LF_VALUE 0x04u  /* map: next item is a value (else a key) */

/* Record an error (first one wins) and return it. */
int nrfprov_i_fail(struct nrfprov_extractor *ex, int status, uint32_t offset);

/* UTF-8 validation of raw string bytes (RFC 3629 table 3: no overlongs, no surrogates,
 * nothing above U+10FFFF). Returns NRFPROV_OK or NRFPROV_E_UTF8. */
int nrfprov_i_utf8(struct nrfprov_extractor *ex, uint8_t b);

/* A string begins / gets a byte / ends, for the current sink. */
void nrfprov_i_string_begin(struct nrfprov_extractor *ex, int sink);
void nrfprov_i_sink_byte(struct nrfprov_extractor *ex, uint8_t b);
void nrfprov_i_sink_bytes(struct nrfprov_extractor *ex, const uint8_t *p, size_t n);
/* Returns NRFPROV_OK or an error (duplicate key, field too long), already recorded. */
int nrfprov_i_string_end(struct nrfprov_extractor *ex);

/* A key that is not a text string (CBOR) or could not be compared: the value is skipped. */
void nrfprov_i_unknown_key(struct nrfprov_extractor *ex);

int nrfprov_i_json_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len);
int nrfprov_i_json_finish(struct nrfprov_extractor *ex);
int nrfprov_i_cbor_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len);
int nrfprov_i_cbor_finish(struct nrfprov_extractor *ex);

#endif /* NRFPROV_INTERNAL_H */
