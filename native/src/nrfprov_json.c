/*
 * nrfprov_json.c - streaming JSON front end (RFC 8259), one byte at a time, no lookahead buffer.
 *
 * The state machine validates the whole document (so a malformed reply is refused, never half
 * used), skips values of unknown keys of any type, and hands the strings of the top-level object
 * to the sinks in nrfprov_core.c. Stricter than Python's json module where that is safer:
 * NaN/Infinity, lone surrogates, duplicate credential keys and a top-level non-object are errors.
 */
#include "nrfprov_internal.h"

enum json_state {
    J_VALUE = 0,      /* a value is expected (top level, after ':' or after ',' in an array) */
    J_ARRAY_FIRST,    /* after '[': a value or ']' */
    J_OBJ_FIRST,      /* after '{': a key or '}' */
    J_KEY,            /* after ',' in an object: a key */
    J_COLON,          /* after a key */
    J_AFTER,          /* after a value inside a container: ',' or the closing bracket */
    J_STRING,         /* inside a string */
    J_ESC,            /* after a backslash */
    J_UHEX,           /* inside \uXXXX, substate = digits read */
    J_SURR_BS,        /* after a high surrogate: '\\' must follow */
    J_SURR_U,         /* ... then 'u' */
    J_NUMBER,         /* inside a number, substate = enum num_phase */
    J_LITERAL,        /* inside true/false/null, substate = index, num_flags = which */
    J_DONE            /* top-level object closed: only whitespace may follow */
};

enum num_phase { N_MINUS = 0, N_ZERO, N_INT, N_FRAC0, N_FRAC, N_EXP0, N_EXPSIGN, N_EXP };

#define NUM_NEG 0x01u
#define NUM_FLOAT 0x02u
#define NUM_RANGE 0x04u

static const char k_literals[3][6] = {"true", "false", "null"};
static const uint8_t k_literal_len[3] = {4, 5, 4};

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The top-level object's known field whose value starts now, or NRFPROV_FIELD_NONE. */
static int known_value(const struct nrfprov_extractor *ex)
{
    return ex->depth == 1 ? ex->cur_field : NRFPROV_FIELD_NONE;
}

/* A value (scalar or container) just ended at the current depth. */
static void value_end(struct nrfprov_extractor *ex)
{
    if (ex->depth == 0) {
        ex->done = 1;
        ex->state = J_DONE;
        return;
    }
    if (ex->depth == 1) {
        ex->cur_field = (int8_t)NRFPROV_FIELD_NONE;
    }
    ex->state = J_AFTER;
}

static int push(struct nrfprov_extractor *ex, uint8_t flags, uint32_t at)
{
    if (ex->depth >= NRFPROV_MAX_DEPTH) {
        return nrfprov_i_fail(ex, NRFPROV_E_DEPTH, at);
    }
    ex->level_flags[ex->depth++] = flags;
    return NRFPROV_OK;
}

static void pop(struct nrfprov_extractor *ex)
{
    ex->depth--;
    value_end(ex);
}

static void emit_codepoint(struct nrfprov_extractor *ex, uint32_t cp)
{
    if (cp < 0x80) {
        nrfprov_i_sink_byte(ex, (uint8_t)cp);
    } else if (cp < 0x800) {
        nrfprov_i_sink_byte(ex, (uint8_t)(0xC0 | (cp >> 6)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        nrfprov_i_sink_byte(ex, (uint8_t)(0xE0 | (cp >> 12)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        nrfprov_i_sink_byte(ex, (uint8_t)(0xF0 | (cp >> 18)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        nrfprov_i_sink_byte(ex, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

/* First byte of a value. */
static int value_start(struct nrfprov_extractor *ex, uint8_t c, uint32_t at)
{
    int field = known_value(ex);

    ex->value_start = at;
    if (ex->depth == 0 && c != '{') {
        return nrfprov_i_fail(ex, NRFPROV_E_NOT_OBJECT, at);
    }
    if (field != NRFPROV_FIELD_NONE) {
        int want_number = field == NRFPROV_FIELD_STATUS_CODE;
        int is_number = c == '-' || (c >= '0' && c <= '9');
        if ((want_number && !is_number) || (!want_number && c != '"')) {
            ex->error_field = field;
            return nrfprov_i_fail(ex, NRFPROV_E_TYPE, at);
        }
    }
    switch (c) {
    case '{':
        ex->state = J_OBJ_FIRST;
        return push(ex, NRFPROV_LF_MAP, at);
    case '[':
        ex->state = J_ARRAY_FIRST;
        return push(ex, 0, at);
    case '"':
        ex->key_expected = 0;
        nrfprov_i_string_begin(ex, field != NRFPROV_FIELD_NONE ? NRFPROV_SINK_FIELD : NRFPROV_SINK_DISCARD);
        ex->state = J_STRING;
        return NRFPROV_OK;
    case 't':
    case 'f':
    case 'n':
        ex->num_flags = (uint8_t)(c == 't' ? 0 : c == 'f' ? 1 : 2);
        ex->substate = 1;
        ex->state = J_LITERAL;
        return NRFPROV_OK;
    default:
        break;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        ex->state = J_NUMBER;
        ex->num_flags = 0;
        ex->status_magnitude = 0;
        if (c == '-') {
            ex->num_flags = NUM_NEG;
            ex->substate = N_MINUS;
        } else {
            ex->substate = c == '0' ? N_ZERO : N_INT;
            ex->status_magnitude = (uint64_t)(c - '0');
        }
        return NRFPROV_OK;
    }
    return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
}

static int key_start(struct nrfprov_extractor *ex, uint32_t at)
{
    ex->value_start = at;
    ex->key_expected = 1;
    if (ex->depth == 1) {
        ex->cur_field = (int8_t)NRFPROV_FIELD_NONE;
        nrfprov_i_string_begin(ex, NRFPROV_SINK_KEY);
    } else {
        nrfprov_i_string_begin(ex, NRFPROV_SINK_DISCARD);
    }
    ex->state = J_STRING;
    return NRFPROV_OK;
}

static int string_end(struct nrfprov_extractor *ex)
{
    int rc = nrfprov_i_string_end(ex);
    if (rc != NRFPROV_OK) {
        return rc;
    }
    if (ex->key_expected) {
        ex->key_expected = 0;
        ex->state = J_COLON;
    } else {
        value_end(ex);
    }
    return NRFPROV_OK;
}

/* A number ended (the byte after it is not part of it). */
static int number_end(struct nrfprov_extractor *ex, uint32_t at)
{
    uint8_t ph = ex->substate;
    if (ph != N_ZERO && ph != N_INT && ph != N_FRAC && ph != N_EXP) {
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
    if (known_value(ex) == NRFPROV_FIELD_STATUS_CODE) {
        uint64_t mag = ex->status_magnitude;
        if (ex->num_flags & NUM_FLOAT) {
            ex->error_field = NRFPROV_FIELD_STATUS_CODE;
            return nrfprov_i_fail(ex, NRFPROV_E_TYPE, ex->value_start);
        }
        if ((ex->num_flags & NUM_RANGE) || mag > (uint64_t)INT64_MAX + ((ex->num_flags & NUM_NEG) ? 1u : 0u)) {
            ex->error_field = NRFPROV_FIELD_STATUS_CODE;
            return nrfprov_i_fail(ex, NRFPROV_E_RANGE, ex->value_start);
        }
        if (ex->num_flags & NUM_NEG) {
            ex->status_code = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
        } else {
            ex->status_code = (int64_t)mag;
        }
    }
    value_end(ex);
    return NRFPROV_OK;
}

static void number_digit(struct nrfprov_extractor *ex, uint8_t c)
{
    uint64_t d = (uint64_t)(c - '0');
    if (ex->status_magnitude > (UINT64_MAX - d) / 10u) {
        ex->num_flags |= NUM_RANGE;
    } else {
        ex->status_magnitude = ex->status_magnitude * 10u + d;
    }
}

/* One byte inside a number; returns 1 if the byte ends the number (it must be re-read). */
static int number_byte(struct nrfprov_extractor *ex, uint8_t c, uint32_t at, int *rc)
{
    int digit = c >= '0' && c <= '9';
    *rc = NRFPROV_OK;
    switch (ex->substate) {
    case N_MINUS:
        if (!digit) {
            *rc = nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
            return 0;
        }
        ex->substate = c == '0' ? N_ZERO : N_INT;
        number_digit(ex, c);
        return 0;
    case N_ZERO:
        break; /* only '.', 'e' or the end may follow a leading zero */
    case N_INT:
        if (digit) {
            number_digit(ex, c);
            return 0;
        }
        break;
    case N_FRAC0:
    case N_FRAC:
        if (digit) {
            ex->substate = N_FRAC;
            return 0;
        }
        if (ex->substate == N_FRAC0) {
            *rc = nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
            return 0;
        }
        if (c == 'e' || c == 'E') {
            ex->substate = N_EXP0;
            return 0;
        }
        return 1;
    case N_EXP0:
        if (c == '+' || c == '-') {
            ex->substate = N_EXPSIGN;
            return 0;
        }
        /* fall through */
    case N_EXPSIGN:
        if (!digit) {
            *rc = nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
            return 0;
        }
        ex->substate = N_EXP;
        return 0;
    case N_EXP:
        return digit ? 0 : 1;
    default:
        break;
    }
    /* N_ZERO or N_INT, non-digit */
    if (c == '.') {
        ex->num_flags |= NUM_FLOAT;
        ex->substate = N_FRAC0;
        return 0;
    }
    if (c == 'e' || c == 'E') {
        ex->num_flags |= NUM_FLOAT;
        ex->substate = N_EXP0;
        return 0;
    }
    if (digit) { /* "01" */
        *rc = nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
        return 0;
    }
    return 1;
}

static int escape_byte(struct nrfprov_extractor *ex, uint8_t c, uint32_t at)
{
    uint8_t out;
    switch (c) {
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case '/': out = '/'; break;
    case 'b': out = 0x08; break;
    case 'f': out = 0x0C; break;
    case 'n': out = 0x0A; break;
    case 'r': out = 0x0D; break;
    case 't': out = 0x09; break;
    case 'u':
        ex->state = J_UHEX;
        ex->substate = 0;
        ex->codepoint = 0;
        return NRFPROV_OK;
    default:
        return nrfprov_i_fail(ex, NRFPROV_E_ESCAPE, at);
    }
    nrfprov_i_sink_byte(ex, out);
    ex->state = J_STRING;
    return NRFPROV_OK;
}

static int hex_byte(struct nrfprov_extractor *ex, uint8_t c, uint32_t at)
{
    int v = hexval(c);
    uint32_t cp;
    if (v < 0) {
        return nrfprov_i_fail(ex, NRFPROV_E_ESCAPE, at);
    }
    ex->codepoint = (ex->codepoint << 4) | (uint32_t)v;
    if (++ex->substate < 4) {
        return NRFPROV_OK;
    }
    cp = ex->codepoint;
    if (ex->hi_surrogate != 0) {
        if (cp < 0xDC00 || cp > 0xDFFF) { /* high surrogate not followed by a low one */
            return nrfprov_i_fail(ex, NRFPROV_E_ESCAPE, at);
        }
        cp = 0x10000u + ((ex->hi_surrogate - 0xD800u) << 10) + (cp - 0xDC00u);
        ex->hi_surrogate = 0;
    } else if (cp >= 0xD800 && cp <= 0xDBFF) {
        ex->hi_surrogate = cp;
        ex->state = J_SURR_BS;
        return NRFPROV_OK;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) { /* lone low surrogate */
        return nrfprov_i_fail(ex, NRFPROV_E_ESCAPE, at);
    }
    emit_codepoint(ex, cp);
    ex->state = J_STRING;
    return NRFPROV_OK;
}

/* Fast path for the bulk of a string (PEM bodies): plain ASCII runs. Returns bytes consumed. */
static size_t string_run(struct nrfprov_extractor *ex, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
        i++;
    }
    if (i != 0 && ex->sink != NRFPROV_SINK_DISCARD) {
        nrfprov_i_sink_bytes(ex, p, i);
    }
    return i;
}

static int string_byte(struct nrfprov_extractor *ex, uint8_t c, uint32_t at)
{
    if (ex->utf8_need != 0 || c >= 0x80) {
        if (nrfprov_i_utf8(ex, c) != NRFPROV_OK) {
            return nrfprov_i_fail(ex, NRFPROV_E_UTF8, at);
        }
        nrfprov_i_sink_byte(ex, c);
        return NRFPROV_OK;
    }
    if (c == '"') {
        return string_end(ex);
    }
    if (c == '\\') {
        ex->state = J_ESC;
        return NRFPROV_OK;
    }
    if (c < 0x20) { /* RFC 8259 section 7: control characters must be escaped */
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
    nrfprov_i_sink_byte(ex, c);
    return NRFPROV_OK;
}

static int structural_byte(struct nrfprov_extractor *ex, uint8_t c, uint32_t at)
{
    switch (ex->state) {
    case J_VALUE:
        return value_start(ex, c, at);
    case J_ARRAY_FIRST:
        if (c == ']') {
            pop(ex);
            return NRFPROV_OK;
        }
        return value_start(ex, c, at);
    case J_OBJ_FIRST:
        if (c == '}') {
            pop(ex);
            return NRFPROV_OK;
        }
        /* fall through */
    case J_KEY:
        if (c == '"') {
            return key_start(ex, at);
        }
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    case J_COLON:
        if (c == ':') {
            ex->state = J_VALUE;
            return NRFPROV_OK;
        }
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    case J_AFTER: {
        uint8_t is_map = ex->level_flags[ex->depth - 1] & NRFPROV_LF_MAP;
        if (c == ',') {
            ex->state = is_map ? J_KEY : J_VALUE;
            return NRFPROV_OK;
        }
        if ((c == '}' && is_map) || (c == ']' && !is_map)) {
            pop(ex);
            return NRFPROV_OK;
        }
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
    case J_DONE:
        return nrfprov_i_fail(ex, NRFPROV_E_TRAILING, at);
    default:
        return nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
    }
}

int nrfprov_i_json_feed(struct nrfprov_extractor *ex, const uint8_t *data, size_t len)
{
    size_t i = 0;
    int rc = NRFPROV_OK;

    while (i < len) {
        uint8_t c = data[i];
        uint32_t at = ex->offset;

        switch (ex->state) {
        case J_STRING: {
            /* No fast path in the middle of a multi-byte character: its continuation bytes must be
             * checked even when they look like ASCII. */
            size_t run = ex->utf8_need == 0 ? string_run(ex, data + i, len - i) : 0;
            if (run != 0) {
                i += run;
                ex->offset += (uint32_t)run;
                continue;
            }
            rc = string_byte(ex, c, at);
            break;
        }
        case J_ESC:
            rc = escape_byte(ex, c, at);
            break;
        case J_UHEX:
            rc = hex_byte(ex, c, at);
            break;
        case J_SURR_BS:
        case J_SURR_U:
            if (c != (ex->state == J_SURR_BS ? '\\' : 'u')) {
                rc = nrfprov_i_fail(ex, NRFPROV_E_ESCAPE, at); /* lone high surrogate */
            } else if (ex->state == J_SURR_BS) {
                ex->state = J_SURR_U;
            } else {
                ex->state = J_UHEX;
                ex->substate = 0;
                ex->codepoint = 0;
            }
            break;
        case J_NUMBER:
            if (number_byte(ex, c, at, &rc)) {
                rc = number_end(ex, at);
                if (rc == NRFPROV_OK) {
                    continue; /* re-read c in the state after the number */
                }
            }
            break;
        case J_LITERAL: {
            const char *lit = k_literals[ex->num_flags];
            if (c != (uint8_t)lit[ex->substate]) {
                rc = nrfprov_i_fail(ex, NRFPROV_E_SYNTAX, at);
            } else if (++ex->substate == k_literal_len[ex->num_flags]) {
                value_end(ex);
            }
            break;
        }
        default:
            if (!is_ws(c)) {
                rc = structural_byte(ex, c, at);
            }
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

int nrfprov_i_json_finish(struct nrfprov_extractor *ex)
{
    if (!ex->done) {
        return nrfprov_i_fail(ex, NRFPROV_E_TRUNCATED, ex->offset);
    }
    return NRFPROV_OK;
}
