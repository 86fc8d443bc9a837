/*
 * Torrix record encoding: tag-length-value, used for every record the data
 * plane reads (snapshot values) or writes (spool run records).
 *
 * A record is a sequence of fields:
 *
 *     uint16 tag (little endian) | uint32 len (little endian) | len bytes
 *
 * Integers are 8 bytes little endian (len == 8).  Strings are raw bytes, not
 * NUL-terminated.  Readers skip tags they do not know, so fields can be added
 * without a schema bump; a field's meaning never changes once shipped.
 * Values read from LMDB are not aligned: decoders copy, never cast.
 */

#ifndef TX_RECORD_H
#define TX_RECORD_H


#include "tx_core.h"


#define TX_REC_HDR_LEN 6


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
} tx_wbuf_t;


void tx_wbuf_init(tx_wbuf_t *wb, uint8_t *buf, size_t len);

void tx_rec_put_bytes(tx_wbuf_t *wb, uint16_t tag, const void *data,
                      size_t len);
void tx_rec_put_u64(tx_wbuf_t *wb, uint16_t tag, uint64_t v);
void tx_rec_put_i64(tx_wbuf_t *wb, uint16_t tag, int64_t v);

/* Puts a NUL-terminated string; a NULL or empty string is skipped. */
void tx_rec_put_cstr(tx_wbuf_t *wb, uint16_t tag, const char *s);

/* Size a field of `len` value bytes takes once encoded. */
#define tx_rec_field_size(len) (TX_REC_HDR_LEN + (len))


/* An iterator over an encoded record; borrows the record's bytes. */
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} tx_rec_iter_t;


void tx_rec_iter_init(tx_rec_iter_t *it, const void *rec, size_t len);

/*
 * Yields the next field.  Returns TX_OK with *tag and *val set, TX_DONE at
 * the end, TX_ERROR when a field runs past the end (truncated or corrupt).
 */
int tx_rec_next(tx_rec_iter_t *it, uint16_t *tag, tx_str_t *val);

/* Decodes an 8-byte little-endian integer value; TX_ERROR if len != 8. */
int tx_rec_u64(const tx_str_t *val, uint64_t *out);
int tx_rec_i64(const tx_str_t *val, int64_t *out);

/*
 * Finds the first field with `tag` in a record.  Returns TX_OK, TX_DECLINED
 * when absent, TX_ERROR when the record is corrupt.
 */
int tx_rec_find(const void *rec, size_t len, uint16_t tag, tx_str_t *val);


#endif /* TX_RECORD_H */
