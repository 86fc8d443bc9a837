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


void
tx_wbuf_init(tx_wbuf_t *wb, uint8_t *buf, size_t len)
{
    wb->start = buf;
    wb->pos = buf;
    wb->end = buf + len;
    wb->overflow = 0;
}


void
tx_rec_put_bytes(tx_wbuf_t *wb, uint16_t tag, const void *data, size_t len)
{
    if (wb->overflow) {
        return;
    }

    if (len > UINT32_MAX || (size_t) (wb->end - wb->pos) < TX_REC_HDR_LEN
        || (size_t) (wb->end - wb->pos) - TX_REC_HDR_LEN < len)
    {
        wb->overflow = 1;
        return;
    }

    tx_rec_put_hdr(wb->pos, tag, (uint32_t) len);
    wb->pos += TX_REC_HDR_LEN;

    if (len) {
        memcpy(wb->pos, data, len);
        wb->pos += len;
    }
}


/* written in place: a run record has some twenty of these */
void
tx_rec_put_u64(tx_wbuf_t *wb, uint16_t tag, uint64_t v)
{
    int      i;
    uint8_t *p;

    if (wb->overflow) {
        return;
    }

    if ((size_t) (wb->end - wb->pos) < TX_REC_HDR_LEN + 8) {
        wb->overflow = 1;
        return;
    }

    p = wb->pos;

    tx_rec_put_hdr(p, tag, 8);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void) i;
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
