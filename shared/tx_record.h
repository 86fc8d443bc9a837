/*
 * Torrix record encoding: tag-length-value, used for every record the data
 * plane reads (snapshot values) or writes (spool run records).
 *
 * A record is a sequence of fields, in one of two forms.  The fixed form
 * (snapshot records):
 *
 *     uint16 tag (little endian) | uint32 len (little endian) | len bytes
 *
 * with integers 8 bytes little endian (len == 8).  The compact form (run
 * records: the spool and the store's runs, the one record written for
 * every request) starts with the byte TX_REC_COMPACT, then
 *
 *     tag (1 byte, below 128) | varint len | len bytes
 *
 * where a varint is LEB128 (7 bits a byte, low first, the top bit set on
 * every byte but the last) in its shortest form, and an integer is its
 * shortest little-endian form: 0 to 8 bytes, 0 for zero.  A field of the
 * run record's is then 2 bytes of header instead of 6, and a count or a
 * status 1 or 2 bytes instead of 8: the gateway benchmark's run takes 274
 * bytes of spool instead of 486.  No fixed-form record starts with TX_REC_COMPACT (no tag's low
 * byte is 0xff), so readers tell the two apart by the first byte and read
 * both; a writer picks its form once, at tx_wbuf_init*().
 *
 * Strings are raw bytes, not NUL-terminated.  Readers skip tags they do not
 * know, so fields can be added without a schema bump; a field's meaning
 * never changes once shipped.  Values read from LMDB are not aligned:
 * decoders copy, never cast.
 */

#ifndef TX_RECORD_H
#define TX_RECORD_H


#include "tx_core.h"


#define TX_REC_HDR_LEN 6    /* a fixed-form field's header */
#define TX_REC_COMPACT 0xff /* the first byte of a compact record */


/*
 * A writer over a caller-owned buffer.  It never allocates: on overflow it
 * sets `overflow` and stops writing, so one check after the last put is
 * enough.  `pos - start` is the encoded length.
 */
typedef struct {
    uint8_t *start;
    uint8_t *pos;
    uint8_t *end;
    int      overflow;
    int      compact;
} tx_wbuf_t;


/* A writer of the fixed form. */
void tx_wbuf_init(tx_wbuf_t *wb, uint8_t *buf, size_t len);

/*
 * A writer of the compact form: it writes TX_REC_COMPACT first, so its
 * record is one byte longer than its fields.  Tags must be below 128.
 */
void tx_wbuf_init_compact(tx_wbuf_t *wb, uint8_t *buf, size_t len);

/* 1 when rec is a compact record. */
#define tx_rec_compact(rec, len)                                               \
    ((len) > 0 && ((const uint8_t *) (rec))[0] == TX_REC_COMPACT)

void tx_rec_put_bytes(tx_wbuf_t *wb, uint16_t tag, const void *data,
                      size_t len);
void tx_rec_put_u64(tx_wbuf_t *wb, uint16_t tag, uint64_t v);
void tx_rec_put_i64(tx_wbuf_t *wb, uint16_t tag, int64_t v);

/* Puts a NUL-terminated string; a NULL or empty string is skipped. */
void tx_rec_put_cstr(tx_wbuf_t *wb, uint16_t tag, const char *s);

/*
 * Size a field of `len` value bytes takes once encoded in the fixed form;
 * in the compact form it takes at most this, plus the record's one leading
 * byte.
 */
#define tx_rec_field_size(len) (TX_REC_HDR_LEN + (len))


/* An iterator over an encoded record; borrows the record's bytes. */
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
    int            compact;
} tx_rec_iter_t;


/* Either form: the first byte tells which. */
void tx_rec_iter_init(tx_rec_iter_t *it, const void *rec, size_t len);

/*
 * Yields the next field.  Returns TX_OK with *tag and *val set, TX_DONE at
 * the end, TX_ERROR when a field runs past the end (truncated or corrupt).
 */
int tx_rec_next(tx_rec_iter_t *it, uint16_t *tag, tx_str_t *val);

/* Decodes a fixed-form integer: 8 bytes little endian; TX_ERROR else. */
int tx_rec_u64(const tx_str_t *val, uint64_t *out);
int tx_rec_i64(const tx_str_t *val, int64_t *out);

/*
 * Decodes an integer of either form: little endian, 0 to 8 bytes (a run
 * record's, stored in either); TX_ERROR if len > 8.
 */
int tx_rec_uint(const tx_str_t *val, uint64_t *out);
int tx_rec_int(const tx_str_t *val, int64_t *out);

/*
 * Finds the first field with `tag` in a record.  Returns TX_OK, TX_DECLINED
 * when absent, TX_ERROR when the record is corrupt.
 */
int tx_rec_find(const void *rec, size_t len, uint16_t tag, tx_str_t *val);


#endif /* TX_RECORD_H */
