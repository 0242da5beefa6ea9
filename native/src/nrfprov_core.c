/*
 * nrfprov_core.c - public API, field table, string sinks and UTF-8 validation shared by the JSON
 * (nrfprov_json.c) and CBOR (nrfprov_cbor.c) front ends.
 *
 * C99, no malloc, no globals (the tables below are const), no I/O.
 */
#include <string.h>

#include "nrfprov_internal.h"

/* Field names exactly as in the Fleet Provisioning API [AWS IoT developer guide, "Device
 * provisioning MQTT API"]. Index = enum nrfprov_field. */
static const char k_names[NRFPROV_FIELD_COUNT][26] = { /* char arrays: .rodata, no relocations */
    "certificateId", "certificatePem", "privateKey", "certificateOwnershipToken",
    "errorCode", "errorMessage", "statusCode",
};

static const size_t k_max[NRFPROV_STRING_FIELD_COUNT] = {
    NRFPROV_MAX_CERTIFICATE_ID, NRFPROV_MAX_PEM, NRFPROV_MAX_PEM,
    NRFPROV_MAX_TOKEN, NRFPROV_MAX_ERROR_CODE, NRFPROV_MAX_ERROR_MESSAGE,
};

/* C99 compile-time check: the block size in the header is the sum of the field limits. */
typedef char nrfprov_all_fields_size_check[(NRFPROV_ALL_FIELDS_SIZE ==
                                            NRFPROV_MAX_CERTIFICATE_ID + 2 * NRFPROV_MAX_PEM + NRFPROV_MAX_TOKEN +
                                                NRFPROV_MAX_ERROR_CODE + NRFPROV_MAX_ERROR_MESSAGE)
                                               ? 1
                                               : -1];

uint32_t nrfprov_version(void) { return NRFPROV_CORE_VERSION; }

size_t nrfprov_state_size(void) { return sizeof(struct nrfprov_extractor); }

size_t nrfprov_field_max(int field)
{
    if (field < 0 || field >= NRFPROV_STRING_FIELD_COUNT) {
        return 0;
    }
    return k_max[field];
}

const char *nrfprov_field_name(int field)
{
    if (field < 0 || field >= NRFPROV_FIELD_COUNT) {
        return NULL;
    }
    return k_names[field];
}

const char *nrfprov_status_name(int status)
{
    switch (status) {
    case NRFPROV_OK: return "NRFPROV_OK";
    case NRFPROV_E_ARG: return "NRFPROV_E_ARG";
    case NRFPROV_E_STATE: return "NRFPROV_E_STATE";
    case NRFPROV_E_SYNTAX: return "NRFPROV_E_SYNTAX";
    case NRFPROV_E_TRUNCATED: return "NRFPROV_E_TRUNCATED";
    case NRFPROV_E_TOO_LARGE: return "NRFPROV_E_TOO_LARGE";
    case NRFPROV_E_FIELD_TOO_LONG: return "NRFPROV_E_FIELD_TOO_LONG";
    case NRFPROV_E_DEPTH: return "NRFPROV_E_DEPTH";
    case NRFPROV_E_UTF8: return "NRFPROV_E_UTF8";
    case NRFPROV_E_ESCAPE: return "NRFPROV_E_ESCAPE";
    case NRFPROV_E_DUPLICATE: return "NRFPROV_E_DUPLICATE";
    case NRFPROV_E_TYPE: return "NRFPROV_E_TYPE";
    case NRFPROV_E_NOT_OBJECT: return "NRFPROV_E_NOT_OBJECT";
    case NRFPROV_E_RANGE: return "NRFPROV_E_RANGE";
    case NRFPROV_E_TRAILING: return "NRFPROV_E_TRAILING";
    case NRFPROV_E_CBOR_INVALID: return "NRFPROV_E_CBOR_INVALID";
    default: return "NRFPROV_E_UNKNOWN";
    }
}

static int valid(const struct nrfprov_extractor *ex)
{
    return ex != NULL && ex->size_check == (uint32_t)sizeof(struct nrfprov_extractor);
}

int nrfprov_init(struct nrfprov_extractor *ex, size_t state_size, int format)
{
    if (ex == NULL || state_size != sizeof(struct nrfprov_extractor)) {
        return NRFPROV_E_ARG;
    }
    if (format != NRFPROV_FORMAT_JSON && format != NRFPROV_FORMAT_CBOR) {
        return NRFPROV_E_ARG;
    }
    memset(ex, 0, sizeof *ex);
    ex->size_check = (uint32_t)sizeof(struct nrfprov_extractor);
    ex->format = (uint8_t)format;
    ex->cur_field = (int8_t)NRFPROV_FIELD_NONE;
    ex->error_field = NRFPROV_FIELD_NONE;
    return NRFPROV_OK;
}

int nrfprov_set_buffer(struct nrfprov_extractor *ex, int field, uint8_t *buf, size_t cap)
{
    if (!valid(ex) || field < 0 || field >= NRFPROV_STRING_FIELD_COUNT || (buf == NULL && cap != 0)) {
        return NRFPROV_E_ARG;
    }
    if (ex->offset != 0 || ex->finished || ex->status != NRFPROV_OK) {
        return NRFPROV_E_STATE;
    }
    ex->slots[field].buf = buf;
    ex->slots[field].cap = cap;
    return NRFPROV_OK;
}

int nrfprov_set_all_buffers(struct nrfprov_extractor *ex, uint8_t *block, size_t size)
{
    size_t at = 0;
    int field;
    int rc;

    if (block == NULL || size < (size_t)NRFPROV_ALL_FIELDS_SIZE) {
        return NRFPROV_E_ARG;
    }
    for (field = 0; field < NRFPROV_STRING_FIELD_COUNT; field++) {
        rc = nrfprov_set_buffer(ex, field, block + at, k_max[field]);
        if (rc != NRFPROV_OK) {
            return rc;
        }
        at += k_max[field];
    }
    return NRFPROV_OK;
}

int nrfprov_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len)
{
    size_t room;
    size_t take;
    int rc;

    if (!valid(ex) || (data == NULL && len != 0)) {
        return NRFPROV_E_ARG;
    }
    if (ex->status != NRFPROV_OK) {
        return ex->status;
    }
    if (ex->finished) {
        return NRFPROV_E_STATE;
    }
    /* The 128 KB cap is checked here, once per chunk, so the front ends can use 32-bit offsets. */
    room = (size_t)NRFPROV_MAX_MESSAGE - ex->offset;
    take = len < room ? len : room;
    if (ex->format == NRFPROV_FORMAT_JSON) {
        rc = nrfprov_i_json_feed(ex, data, take);
    } else {
        rc = nrfprov_i_cbor_feed(ex, data, take);
    }
    if (rc != NRFPROV_OK) {
        return rc;
    }
    if (take < len) {
        return nrfprov_i_fail(ex, NRFPROV_E_TOO_LARGE, (uint32_t)NRFPROV_MAX_MESSAGE);
    }
    return NRFPROV_OK;
}

int nrfprov_finish(struct nrfprov_extractor *ex)
{
    if (!valid(ex)) {
        return NRFPROV_E_ARG;
    }
    if (ex->status != NRFPROV_OK) {
        return ex->status;
    }
    if (ex->finished) {
        return NRFPROV_E_STATE;
    }
    ex->finished = 1;
    if (ex->format == NRFPROV_FORMAT_JSON) {
        return nrfprov_i_json_finish(ex);
    }
    return nrfprov_i_cbor_finish(ex);
}

int nrfprov_field_present(const struct nrfprov_extractor *ex, int field)
{
    if (!valid(ex) || field < 0 || field >= NRFPROV_FIELD_COUNT) {
        return 0;
    }
    if (field == NRFPROV_FIELD_STATUS_CODE) {
        return ex->status_present;
    }
    return ex->slots[field].present;
}

unsigned int nrfprov_present_mask(const struct nrfprov_extractor *ex)
{
    unsigned int mask = 0;
    int field;
    if (!valid(ex)) {
        return 0;
    }
    for (field = 0; field < NRFPROV_FIELD_COUNT; field++) {
        if (nrfprov_field_present(ex, field)) {
            mask |= 1u << field;
        }
    }
    return mask;
}

size_t nrfprov_field_len(const struct nrfprov_extractor *ex, int field)
{
    if (!valid(ex) || field < 0 || field >= NRFPROV_STRING_FIELD_COUNT) {
        return 0;
    }
    return ex->slots[field].len;
}

int64_t nrfprov_status_code(const struct nrfprov_extractor *ex)
{
    return valid(ex) ? ex->status_code : 0;
}

int nrfprov_error(const struct nrfprov_extractor *ex) { return valid(ex) ? ex->status : NRFPROV_E_ARG; }

size_t nrfprov_error_offset(const struct nrfprov_extractor *ex) { return valid(ex) ? ex->error_offset : 0; }

int nrfprov_error_field(const struct nrfprov_extractor *ex)
{
    return valid(ex) ? ex->error_field : NRFPROV_FIELD_NONE;
}

size_t nrfprov_error_size(const struct nrfprov_extractor *ex) { return valid(ex) ? ex->error_size : 0; }

int nrfprov_result(const struct nrfprov_extractor *ex, struct nrfprov_result *out)
{
    int field;

    if (!valid(ex) || out == NULL) {
        return NRFPROV_E_ARG;
    }
    out->status = ex->status;
    out->present = nrfprov_present_mask(ex);
    for (field = 0; field < NRFPROV_STRING_FIELD_COUNT; field++) {
        /* len saturates at NRFPROV_MAX_MESSAGE (sink_byte/sink_bytes), so it fits 32 bits. */
        out->len[field] = (uint32_t)ex->slots[field].len;
    }
    out->status_code = ex->status_code;
    return NRFPROV_OK;
}

static size_t slot_limit(const struct nrfprov_slot *slot, int field);

int nrfprov_wipe(struct nrfprov_extractor *ex)
{
    int field;

    if (!valid(ex)) {
        return NRFPROV_E_ARG;
    }
    for (field = 0; field < NRFPROV_STRING_FIELD_COUNT; field++) {
        const struct nrfprov_slot *slot = &ex->slots[field];
        /* The sinks write only below slot_limit(); a field's value starts once (a second value is
         * NRFPROV_E_DUPLICATE before it begins), so len is its high-water mark. */
        size_t limit = slot_limit(slot, field);
        if (slot->buf != NULL) {
            memset(slot->buf, 0, slot->len < limit ? slot->len : limit);
        }
    }
    return NRFPROV_OK;
}

int nrfprov_extract(struct nrfprov_extractor *ex, size_t state_size, int format, uint8_t *block,
                    size_t block_size, const uint8_t *data, size_t len, struct nrfprov_result *out)
{
    int rc;

    if (out == NULL) {
        return NRFPROV_E_ARG;
    }
    rc = nrfprov_init(ex, state_size, format);
    if (rc == NRFPROV_OK) {
        rc = nrfprov_set_all_buffers(ex, block, block_size);
    }
    if (rc != NRFPROV_OK) {
        return rc; /* arguments refused: nothing was parsed or written */
    }
    rc = nrfprov_feed(ex, data, len);
    if (rc == NRFPROV_OK) {
        rc = nrfprov_finish(ex);
    }
    (void)nrfprov_result(ex, out); /* cannot fail: ex was initialised above, out is not NULL */
    return rc;
}

/* ---- internal helpers ------------------------------------------------------------------------ */

int nrfprov_i_fail(struct nrfprov_extractor *ex, int status, uint32_t offset)
{
    if (ex->status == NRFPROV_OK) {
        ex->status = status;
        ex->error_offset = offset;
    }
    return ex->status;
}

int nrfprov_i_utf8(struct nrfprov_extractor *ex, uint8_t b)
{
    if (ex->utf8_need != 0) {
        if (b < ex->utf8_lo || b > ex->utf8_hi) {
            return NRFPROV_E_UTF8;
        }
        ex->utf8_need--;
        ex->utf8_lo = 0x80;
        ex->utf8_hi = 0xBF;
        return NRFPROV_OK;
    }
    if (b < 0x80) {
        return NRFPROV_OK;
    }
    ex->utf8_lo = 0x80;
    ex->utf8_hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        ex->utf8_need = 1;
    } else if (b == 0xE0) {
        ex->utf8_need = 2;
        ex->utf8_lo = 0xA0; /* no overlongs */
    } else if (b == 0xED) {
        ex->utf8_need = 2;
        ex->utf8_hi = 0x9F; /* no UTF-16 surrogates */
    } else if (b >= 0xE1 && b <= 0xEF) {
        ex->utf8_need = 2;
    } else if (b == 0xF0) {
        ex->utf8_need = 3;
        ex->utf8_lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
        ex->utf8_need = 3;
    } else if (b == 0xF4) {
        ex->utf8_need = 3;
        ex->utf8_hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return NRFPROV_E_UTF8;
    }
    return NRFPROV_OK;
}

static size_t slot_limit(const struct nrfprov_slot *slot, int field)
{
    size_t limit = k_max[field];
    if (slot->buf != NULL && slot->cap < limit) {
        limit = slot->cap;
    }
    return limit;
}

void nrfprov_i_string_begin(struct nrfprov_extractor *ex, int sink)
{
    ex->sink = (uint8_t)sink;
    ex->utf8_need = 0;
    if (sink == NRFPROV_SINK_KEY) {
        ex->key_len = 0;
        ex->key_overflow = 0;
    } else if (sink == NRFPROV_SINK_FIELD) {
        ex->slots[ex->cur_field].len = 0;
    }
}

void nrfprov_i_sink_byte(struct nrfprov_extractor *ex, uint8_t b)
{
    if (ex->sink == NRFPROV_SINK_FIELD) {
        struct nrfprov_slot *slot = &ex->slots[ex->cur_field];
        /* Past the limit the value is only counted, so the error can report its full length. */
        if (slot->buf != NULL && slot->len < slot_limit(slot, ex->cur_field)) {
            slot->buf[slot->len] = b;
        }
        if (slot->len < (size_t)NRFPROV_MAX_MESSAGE) {
            slot->len++;
        }
    } else if (ex->sink == NRFPROV_SINK_KEY) {
        if (ex->key_len < NRFPROV_KEY_BUF) {
            ex->key[ex->key_len++] = b;
        } else {
            ex->key_overflow = 1;
        }
    }
}

void nrfprov_i_sink_bytes(struct nrfprov_extractor *ex, const uint8_t *p, size_t n)
{
    if (ex->sink == NRFPROV_SINK_FIELD) {
        /* Bulk copy of what fits (PEM bodies); the rest is only counted, as in sink_byte. */
        struct nrfprov_slot *slot = &ex->slots[ex->cur_field];
        size_t limit = slot_limit(slot, ex->cur_field);
        if (slot->buf != NULL && slot->len < limit) {
            size_t room = limit - slot->len;
            memcpy(slot->buf + slot->len, p, n < room ? n : room);
        }
        slot->len = slot->len + n < (size_t)NRFPROV_MAX_MESSAGE ? slot->len + n : (size_t)NRFPROV_MAX_MESSAGE;
    } else if (ex->sink == NRFPROV_SINK_KEY) {
        size_t i;
        for (i = 0; i < n; i++) {
            nrfprov_i_sink_byte(ex, p[i]);
        }
    }
}

void nrfprov_i_unknown_key(struct nrfprov_extractor *ex) { ex->cur_field = (int8_t)NRFPROV_FIELD_NONE; }

static int resolve_key(struct nrfprov_extractor *ex)
{
    int field;

    ex->cur_field = (int8_t)NRFPROV_FIELD_NONE;
    if (ex->key_overflow) {
        return NRFPROV_OK;
    }
    for (field = 0; field < NRFPROV_FIELD_COUNT; field++) {
        size_t n = strlen(k_names[field]);
        if (n == ex->key_len && memcmp(k_names[field], ex->key, n) == 0) {
            break;
        }
    }
    if (field == NRFPROV_FIELD_COUNT) {
        return NRFPROV_OK;
    }
    /* Two values for one credential field are ambiguous: refuse rather than pick one. */
    if (nrfprov_field_present(ex, field)) {
        ex->error_field = field;
        return nrfprov_i_fail(ex, NRFPROV_E_DUPLICATE, ex->value_start);
    }
    if (field == NRFPROV_FIELD_STATUS_CODE) {
        ex->status_present = 1;
    } else {
        ex->slots[field].present = 1;
    }
    ex->cur_field = (int8_t)field;
    return NRFPROV_OK;
}

int nrfprov_i_string_end(struct nrfprov_extractor *ex)
{
    int sink = ex->sink;

    ex->sink = NRFPROV_SINK_DISCARD;
    if (sink == NRFPROV_SINK_KEY) {
        return resolve_key(ex);
    }
    if (sink == NRFPROV_SINK_FIELD) {
        const struct nrfprov_slot *slot = &ex->slots[ex->cur_field];
        if (slot->len > slot_limit(slot, ex->cur_field)) {
            ex->error_field = ex->cur_field;
            ex->error_size = (uint32_t)slot->len;
            return nrfprov_i_fail(ex, NRFPROV_E_FIELD_TOO_LONG, ex->value_start);
        }
    }
    return NRFPROV_OK;
}
