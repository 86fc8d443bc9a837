/*
 * Torrix record encoding (see tx_record.h).
 */

#include <string.h>

#include "tx_record.h"


static void
tx_rec_put_hdr(uint8_t *p, uint16_t tag, uint32_t len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* the record's own byte order: two stores */
    memcpy(p, &tag, 2);
    memcpy(p + 2, &len, 4);
#else
    p[0] = (uint8_t) tag;
    p[1] = (uint8_t) (tag >> 8);
    p[2] = (uint8_t) len;
    p[3] = (uint8_t) (len >> 8);
    p[4] = (uint8_t) (len >> 16);
    p[5] = (uint8_t) (len >> 24);
#endif
}


/* a compact header at p, room checked (tx_rec_varhdr_len bytes) */
static void
tx_rec_put_varhdr(uint8_t *p, uint16_t tag, uint32_t len)
{
    *p++ = (uint8_t) tag;

    while (len >= 0x80) {
        *p++ = (uint8_t) (len | 0x80);
        len >>= 7;
    }

    *p = (uint8_t) len;
}


/* the length of a compact header */
static size_t
tx_rec_varhdr_len(uint32_t len)
{
    size_t n;

    for (n = 2; len >= 0x80; n++) {
        len >>= 7;
    }

    return n;
}


void
tx_wbuf_init(tx_wbuf_t *wb, uint8_t *buf, size_t len)
{
    wb->start = buf;
    wb->pos = buf;
    wb->end = buf + len;
    wb->overflow = 0;
    wb->compact = 0;
}


void
tx_wbuf_init_compact(tx_wbuf_t *wb, uint8_t *buf, size_t len)
{
    tx_wbuf_init(wb, buf, len);
    wb->compact = 1;

    if (len == 0) {
        wb->overflow = 1;
        return;
    }

    *wb->pos++ = TX_REC_COMPACT;
}


void
tx_rec_put_bytes(tx_wbuf_t *wb, uint16_t tag, const void *data, size_t len)
{
    size_t h;

    if (wb->overflow) {
        return;
    }

    h = !wb->compact ? TX_REC_HDR_LEN
        : len < 0x80 ? 2 /* the usual: a one-byte tag and length */
                     : tx_rec_varhdr_len((uint32_t) len);

    if (len > UINT32_MAX || (wb->compact && tag >= 0x80)
        || (size_t) (wb->end - wb->pos) < h
        || (size_t) (wb->end - wb->pos) - h < len)
    {
        wb->overflow = 1;
        return;
    }

    if (h == 2) {
        /* written in place: the varint loop costs ~120 instructions a run */
        wb->pos[0] = (uint8_t) tag;
        wb->pos[1] = (uint8_t) len;

    } else if (wb->compact) {
        tx_rec_put_varhdr(wb->pos, tag, (uint32_t) len);

    } else {
        tx_rec_put_hdr(wb->pos, tag, (uint32_t) len);
    }

    wb->pos += h;

    if (len) {
        memcpy(wb->pos, data, len);
        wb->pos += len;
    }
}


/* written in place: a run record has some twenty of these */
void
tx_rec_put_u64(tx_wbuf_t *wb, uint16_t tag, uint64_t v)
{
    int      i, n;
    uint8_t *p;

    if (wb->overflow) {
        return;
    }

    if (wb->compact) {
        /* the shortest little-endian form: bytes up to the highest set */
        n = v ? (71 - __builtin_clzll(v)) >> 3 : 0;
        p = wb->pos;

        if (tag >= 0x80 || wb->end - p < 2 + n) {
            wb->overflow = 1;
            return;
        }

        p[0] = (uint8_t) tag;
        p[1] = (uint8_t) n;
        wb->pos = p + 2 + n;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (wb->end - p >= 10) {
            /* all eight: the record goes on past the n that count */
            memcpy(p + 2, &v, 8);
            return;
        }
#endif

        for (i = 0; i < n; i++) {
            p[2 + i] = (uint8_t) (v >> (8 * i));
        }

        return;
    }

    if ((size_t) (wb->end - wb->pos) < TX_REC_HDR_LEN + 8) {
        wb->overflow = 1;
        return;
    }

    p = wb->pos;

    tx_rec_put_hdr(p, tag, 8);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p + TX_REC_HDR_LEN, &v, 8);
#else
    for (i = 0; i < 8; i++) {
        p[TX_REC_HDR_LEN + i] = (uint8_t) (v >> (8 * i));
    }
#endif

    wb->pos = p + TX_REC_HDR_LEN + 8;
}


void
tx_rec_put_i64(tx_wbuf_t *wb, uint16_t tag, int64_t v)
{
    tx_rec_put_u64(wb, tag, (uint64_t) v);
}


void
tx_rec_put_cstr(tx_wbuf_t *wb, uint16_t tag, const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return;
    }

    tx_rec_put_bytes(wb, tag, s, strlen(s));
}


void
tx_rec_iter_init(tx_rec_iter_t *it, const void *rec, size_t len)
{
    it->pos = rec;
    it->end = it->pos + len;
    it->compact = tx_rec_compact(rec, len);

    if (it->compact) {
        it->pos++;
    }
}


/*
 * A varint of at most max bits at *pp, shortest form only (so a record has
 * one encoding and re-encodes to the same bytes): TX_OK and *pp past it.
 */
static int
tx_rec_varint(const uint8_t **pp, const uint8_t *end, unsigned max,
              uint64_t *out)
{
    unsigned       shift;
    uint64_t       v;
    const uint8_t *p;

    p = *pp;
    v = 0;

    for (shift = 0; p < end; shift += 7) {
        if (shift >= max) {
            return TX_ERROR;
        }

        v |= (uint64_t) (*p & 0x7f) << shift;

        if ((*p & 0x80) == 0) {
            if ((*p == 0 && shift) || (v >> max) != 0) {
                return TX_ERROR;
            }

            *out = v;
            *pp = p + 1;

            return TX_OK;
        }

        p++;
    }

    return TX_ERROR;
}


static int
tx_rec_next_compact(tx_rec_iter_t *it, uint16_t *tag, tx_str_t *val)
{
    uint64_t       len;
    const uint8_t *p;

    p = it->pos;

    if (p[0] & 0x80) {
        return TX_ERROR;
    }

    *tag = p[0];
    p++;

    /* the usual field: a one-byte length */
    if (p < it->end && (p[0] & 0x80) == 0) {
        len = *p++;

    } else if (tx_rec_varint(&p, it->end, 32, &len) != TX_OK) {
        return TX_ERROR;
    }

    if (len > (size_t) (it->end - p)) {
        return TX_ERROR;
    }

    val->data = p;
    val->len = (size_t) len;

    it->pos = p + len;

    return TX_OK;
}


int
tx_rec_next(tx_rec_iter_t *it, uint16_t *tag, tx_str_t *val)
{
    size_t         left;
    uint32_t       len;
    const uint8_t *p;

    if (it->pos == NULL || it->pos == it->end) {
        return TX_DONE;
    }

    if (it->compact) {
        return tx_rec_next_compact(it, tag, val);
    }

    p = it->pos;
    left = (size_t) (it->end - p);

    if (left < TX_REC_HDR_LEN) {
        return TX_ERROR;
    }

    len = (uint32_t) p[2] | (uint32_t) p[3] << 8 | (uint32_t) p[4] << 16
          | (uint32_t) p[5] << 24;

    if (len > left - TX_REC_HDR_LEN) {
        return TX_ERROR;
    }

    *tag = (uint16_t) (p[0] | p[1] << 8);
    val->data = p + TX_REC_HDR_LEN;
    val->len = len;

    it->pos = p + TX_REC_HDR_LEN + len;

    return TX_OK;
}


int
tx_rec_u64(const tx_str_t *val, uint64_t *out)
{
    uint64_t v;

    if (val->len != 8) {
        return TX_ERROR;
    }

    memcpy(&v, val->data, 8);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif

    *out = v;

    return TX_OK;
}


int
tx_rec_uint(const tx_str_t *val, uint64_t *out)
{
    size_t   i;
    uint64_t v;

    if (val->len == 8) {
        return tx_rec_u64(val, out);
    }

    if (val->len > 8) {
        return TX_ERROR;
    }

    v = 0;

    for (i = 0; i < val->len; i++) {
        v |= (uint64_t) val->data[i] << (8 * i);
    }

    *out = v;

    return TX_OK;
}


int
tx_rec_int(const tx_str_t *val, int64_t *out)
{
    uint64_t v;

    if (tx_rec_uint(val, &v) != TX_OK) {
        return TX_ERROR;
    }

    *out = (int64_t) v;

    return TX_OK;
}


int
tx_rec_i64(const tx_str_t *val, int64_t *out)
{
    uint64_t v;

    if (tx_rec_u64(val, &v) != TX_OK) {
        return TX_ERROR;
    }

    *out = (int64_t) v;

    return TX_OK;
}


int
tx_rec_find(const void *rec, size_t len, uint16_t tag, tx_str_t *val)
{
    int           rc;
    uint16_t      t;
    tx_str_t      v;
    tx_rec_iter_t it;

    tx_rec_iter_init(&it, rec, len);

    for (;;) {
        rc = tx_rec_next(&it, &t, &v);

        if (rc == TX_DONE) {
            return TX_DECLINED;
        }

        if (rc != TX_OK) {
            return TX_ERROR;
        }

        if (t == tag) {
            *val = v;
            return TX_OK;
        }
    }
}
