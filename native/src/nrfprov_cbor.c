/*
 * nrfprov_cbor.c - streaming CBOR front end (RFC 8949), one byte at a time, no lookahead buffer.
 *
 * Well-formedness is checked for every item (RFC 8949 section 3 and appendix C): reserved
 * additional-information values 28..30, indefinite length on major types 0, 1 and 6, a break
 * outside an indefinite container or between a map key and its value, chunks of an
 * indefinite-length string that are not definite strings of the same major type, and two-byte
 * simple values below 32 are refused. Text strings must be valid UTF-8 chunk by chunk. Unknown
 * items of any major type (tags, floats, simple values, byte strings, nested containers) are skipped.
 */
#include "nrfprov_internal.h"

enum cbor_state { C_HEAD = 0, C_ARG, C_STRING, C_DONE };

enum cbor_role { R_TOP, R_KEY, R_VALUE, R_OTHER };

#define CB_TAGGED 0x01u /* num_flags: the item being read is preceded by a tag */

static int role(const struct nrfprov_extractor *ex)
{
    if (ex->depth == 0) {
        return R_TOP;
    }
    if (ex->depth == 1) {
        return (ex->level_flags[0] & NRFPROV_LF_VALUE) ? R_VALUE : R_KEY;
    }
    return R_OTHER;
}

/* An item at the current depth is complete; close every definite container it completes. */
static int item_done(struct nrfprov_extractor *ex)
{
    ex->state = C_HEAD;
    for (;;) {
        uint8_t *lf;
        if (ex->depth == 0) {
            ex->done = 1;
            ex->state = C_DONE;
            return NRFPROV_OK;
        }
        lf = &ex->level_flags[ex->depth - 1];
        if (*lf & NRFPROV_LF_MAP) {
            if (ex->depth == 1 && (*lf & NRFPROV_LF_VALUE)) {
                ex->cur_field = (int8_t)NRFPROV_FIELD_NONE; /* the field's value is complete */
            }
            *lf ^= NRFPROV_LF_VALUE;
        }
        if ((*lf & NRFPROV_LF_INDEF) || --ex->level_left[ex->depth - 1] != 0) {
            return NRFPROV_OK;
        }
        ex->depth--; /* the container is itself a complete item of its parent */
    }
}

static int string_complete(struct nrfprov_extractor *ex)
{
    int rc = nrfprov_i_string_end(ex);
    if (rc != NRFPROV_OK) {
        return rc;
    }
    return item_done(ex);
}

static int type_error(struct nrfprov_extractor *ex, int field)
{
    ex->error_field = field;
    return nrfprov_i_fail(ex, NRFPROV_E_TYPE, ex->value_start);
}

static int chunk_item(struct nrfprov_extractor *ex, uint32_t at)
{
    if (ex->cbor_major == 7 && ex->cbor_ai == 31) { /* break: end of the indefinite string */
        ex->cbor_indef_str = 0;
        return string_complete(ex);
    }
    if (ex->cbor_major != ex->cbor_indef_str || ex->cbor_ai == 31) {
        return nrfprov_i_fail(ex, NRFPROV_E_CBOR_INVALID, at);
    }
    ex->cbor_left = ex->cbor_arg;
    ex->utf8_need = 0;
    ex->state = ex->cbor_left != 0 ? C_STRING : C_HEAD;
    return NRFPROV_OK;
}

static int break_item(struct nrfprov_extractor *ex, uint32_t at)
{
    uint8_t lf;
    if (ex->num_flags & CB_TAGGED) {
        return nrfprov_i_fail(ex, NRFPROV_E_CBOR_INVALID, at);
    }
    if (ex->depth == 0) {
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
    lf = ex->level_flags[ex->depth - 1];
    if (!(lf & NRFPROV_LF_INDEF) || ((lf & NRFPROV_LF_MAP) && (lf & NRFPROV_LF_VALUE))) {
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
    ex->depth--;
    return item_done(ex);
}

static int status_value(struct nrfprov_extractor *ex)
{
    uint64_t arg = ex->cbor_arg;
    if (arg > (uint64_t)INT64_MAX) {
        ex->error_field = NRFPROV_FIELD_STATUS_CODE;
        return nrfprov_i_fail(ex, NRFPROV_E_RANGE, ex->value_start);
    }
    ex->status_code = ex->cbor_major == 0 ? (int64_t)arg : -1 - (int64_t)arg;
    return NRFPROV_OK;
}

static int open_container(struct nrfprov_extractor *ex, uint32_t at)
{
    int is_map = ex->cbor_major == 5;
    int indef = ex->cbor_ai == 31;
    uint64_t items = ex->cbor_arg;

    if (ex->depth >= NRFPROV_MAX_DEPTH) {
        return nrfprov_i_fail(ex, NRFPROV_E_DEPTH, at);
    }
    /* Saturate: 2^32 items need more than 128 KB, so a saturated count can never reach zero and
     * the message ends as truncated or too large. */
    items = items > 0x7FFFFFFFu ? 0xFFFFFFFFu : items * (is_map ? 2u : 1u);
    ex->level_flags[ex->depth] = (uint8_t)((is_map ? NRFPROV_LF_MAP : 0u) | (indef ? NRFPROV_LF_INDEF : 0u));
    ex->level_left[ex->depth] = (uint32_t)items;
    ex->depth++;
    if (!indef && items == 0) {
        ex->depth--;
        return item_done(ex);
    }
    ex->state = C_HEAD;
    return NRFPROV_OK;
}

/* The head (initial byte + argument) of an item is complete. */
static int item(struct nrfprov_extractor *ex, uint32_t at)
{
    uint8_t major = ex->cbor_major;
    int r;
    int tagged;
    int known;

    if (ex->cbor_indef_str != 0) {
        return chunk_item(ex, at);
    }
    if (major == 7 && ex->cbor_ai == 31) {
        return break_item(ex, at);
    }
    r = role(ex);
    known = r == R_VALUE ? ex->cur_field : NRFPROV_FIELD_NONE;
    if (major == 6) { /* tag: the next item is its content */
        if (r == R_TOP) {
            return nrfprov_i_fail(ex, NRFPROV_E_NOT_OBJECT, ex->value_start);
        }
        if (known != NRFPROV_FIELD_NONE) {
            return type_error(ex, known);
        }
        ex->num_flags |= CB_TAGGED;
        ex->state = C_HEAD;
        return NRFPROV_OK;
    }
    tagged = (ex->num_flags & CB_TAGGED) != 0;
    ex->num_flags &= (uint8_t)~CB_TAGGED;
    if (r == R_TOP && major != 5) {
        return nrfprov_i_fail(ex, NRFPROV_E_NOT_OBJECT, ex->value_start);
    }
    if (known == NRFPROV_FIELD_STATUS_CODE && major != 0 && major != 1) {
        return type_error(ex, known);
    }
    if (known != NRFPROV_FIELD_NONE && known != NRFPROV_FIELD_STATUS_CODE && major != 3) {
        return type_error(ex, known);
    }
    if (r == R_KEY) {
        ex->cur_field = (int8_t)NRFPROV_FIELD_NONE;
    }
    switch (major) {
    case 0:
    case 1:
        if (known == NRFPROV_FIELD_STATUS_CODE && status_value(ex) != NRFPROV_OK) {
            return ex->status;
        }
        return item_done(ex);
    case 2:
    case 3: {
        int sink = NRFPROV_SINK_DISCARD;
        if (r == R_KEY && major == 3 && !tagged) {
            sink = NRFPROV_SINK_KEY;
        } else if (known != NRFPROV_FIELD_NONE) {
            sink = NRFPROV_SINK_FIELD;
        }
        nrfprov_i_string_begin(ex, sink);
        ex->cbor_str_major = major;
        if (ex->cbor_ai == 31) {
            ex->cbor_indef_str = major;
            ex->state = C_HEAD;
            return NRFPROV_OK;
        }
        ex->cbor_left = ex->cbor_arg;
        if (ex->cbor_left == 0) {
            return string_complete(ex);
        }
        ex->state = C_STRING;
        return NRFPROV_OK;
    }
    case 4:
    case 5:
        return open_container(ex, at);
    default: /* 7: simple values and floats */
        if (ex->cbor_ai == 24 && ex->cbor_arg < 32) { /* RFC 8949 3.3: not well-formed */
            return nrfprov_i_fail(ex, NRFPROV_E_CBOR_INVALID, at);
        }
        return item_done(ex);
    }
}

static int head_byte(struct nrfprov_extractor *ex, uint8_t b, uint32_t at)
{
    uint8_t major = (uint8_t)(b >> 5);
    uint8_t ai = (uint8_t)(b & 31u);

    if (ex->cbor_indef_str == 0 && !(ex->num_flags & CB_TAGGED)) {
        ex->value_start = at;
    }
    ex->cbor_major = major;
    ex->cbor_ai = ai;
    ex->cbor_arg = 0;
    if (ai < 24) {
        ex->cbor_arg = ai;
        return item(ex, at);
    }
    if (ai <= 27) {
        ex->cbor_need = (uint8_t)(1u << (ai - 24));
        ex->state = C_ARG;
        return NRFPROV_OK;
    }
    if (ai <= 30 || major == 0 || major == 1 || major == 6) {
        return nrfprov_i_fail(ex, NRFPROV_E_CBOR_INVALID, at);
    }
    return item(ex, at); /* ai 31: indefinite length, or break for major 7 */
}

/* Bytes of a definite string (or chunk). Returns bytes consumed, or 0 after an error. */
static size_t string_bytes(struct nrfprov_extractor *ex, const uint8_t *p, size_t n, int *rc)
{
    size_t take = (uint64_t)n < ex->cbor_left ? n : (size_t)ex->cbor_left;
    size_t i;

    *rc = NRFPROV_OK;
    if (ex->cbor_str_major == 3) {
        for (i = 0; i < take; i++) {
            /* ASCII outside a multi-byte character needs no call (the bulk of PEM text) */
            if ((p[i] >= 0x80 || ex->utf8_need != 0) && nrfprov_i_utf8(ex, p[i]) != NRFPROV_OK) {
                *rc = nrfprov_i_fail(ex, NRFPROV_E_UTF8, ex->offset + (uint32_t)i);
                return 0;
            }
        }
    }
    if (ex->sink != NRFPROV_SINK_DISCARD) {
        nrfprov_i_sink_bytes(ex, p, take);
    }
    ex->cbor_left -= take;
    ex->offset += (uint32_t)take;
    if (ex->cbor_left != 0) {
        return take;
    }
    if (ex->cbor_str_major == 3 && ex->utf8_need != 0) { /* a chunk must end on a character */
        *rc = nrfprov_i_fail(ex, NRFPROV_E_UTF8, ex->offset - 1u);
        return 0;
    }
    if (ex->cbor_indef_str != 0) {
        ex->state = C_HEAD;
        return take;
    }
    *rc = string_complete(ex);
    return take;
}

int nrfprov_i_cbor_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len)
{
    size_t i = 0;
    int rc = NRFPROV_OK;

    while (i < len) {
        uint8_t b = data[i];
        uint32_t at = ex->offset;

        switch (ex->state) {
        case C_STRING:
            i += string_bytes(ex, data + i, len - i, &rc);
            if (rc != NRFPROV_OK) {
                return rc;
            }
            continue; /* string_bytes advanced the offset itself */
        case C_HEAD:
            rc = head_byte(ex, b, at);
            break;
        case C_ARG:
            ex->cbor_arg = (ex->cbor_arg << 8) | b;
            if (--ex->cbor_need == 0) {
                rc = item(ex, at);
            }
            break;
        default: /* C_DONE */
            rc = nrfprov_i_fail(ex, NRFPROV_E_TRAILING, at);
            break;
        }
        if (rc != NRFPROV_OK) {
            return rc;
        }
        i++;
        ex->offset++;
    }
    return NRFPROV_OK;
}

int nrfprov_i_cbor_finish(struct nrfprov_extractor *ex)
{
    if (!ex->done) {
        return nrfprov_i_fail(ex, NRFPROV_E_TRUNCATED, ex->offset);
    }
    return NRFPROV_OK;
}
