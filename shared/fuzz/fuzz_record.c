/*
 * libFuzzer: the TLV iterator and the snapshot decoders on arbitrary bytes,
 * and the glob matcher on the decoded model list.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"
#include "tx_snapshot.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
tx_fuzz_in(const tx_str_t *s, const uint8_t *base, size_t size)
{
    if (s->len && (s->data < base || s->data + s->len > base + size)) {
        abort();
    }
}


/* an integer through a compact record and back */
static uint64_t
tx_fuzz_int(uint16_t tag, uint64_t u)
{
    uint8_t       buf[1 + 2 + 8];
    uint16_t      t;
    uint64_t      out;
    tx_str_t      v;
    tx_wbuf_t     wb;
    tx_rec_iter_t it;

    tag &= 0x7f;

    tx_wbuf_init_compact(&wb, buf, sizeof(buf));
    tx_rec_put_u64(&wb, tag, u);

    tx_rec_iter_init(&it, buf, wb.pos - wb.start);

    if (wb.overflow || tx_rec_next(&it, &t, &v) != TX_OK || t != tag
        || tx_rec_uint(&v, &out) != TX_OK
        || tx_rec_next(&it, &t, &v) != TX_DONE)
    {
        abort();
    }

    return out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc, n;
    uint8_t          *copy, *re;
    uint16_t          tag;
    uint64_t          u, u8;
    tx_str_t          v, f;
    tx_wbuf_t         wb;
    tx_key_rec_t      k;
    tx_khash_rec_t    kh;
    tx_rec_iter_t     it;
    tx_provider_rec_t pr;

    copy = malloc(size ? size : 1);
    re = malloc(size ? size : 1);
    if (copy == NULL || re == NULL) {
        free(copy);
        free(re);
        return 0;
    }

    memcpy(copy, data, size);

    /* iterate, and re-encode what was read in its form: the same bytes */
    tx_rec_iter_init(&it, copy, size);

    if (it.compact) {
        tx_wbuf_init_compact(&wb, re, size);

    } else {
        tx_wbuf_init(&wb, re, size);
    }

    n = 0;

    while ((rc = tx_rec_next(&it, &tag, &v)) == TX_OK) {
        tx_fuzz_in(&v, copy, size);

        /* the strict decoder agrees with the one of either form */
        if (tx_rec_u64(&v, &u8) == TX_OK
            && (tx_rec_uint(&v, &u) != TX_OK || u != u8)) {
            abort();
        }

        if (tx_rec_uint(&v, &u) == TX_OK && tx_fuzz_int(tag, u) != u) {
            abort();
        }

        tx_rec_put_bytes(&wb, tag, v.data, v.len);

        if (n++ == 0 && tx_rec_find(copy, size, tag, &f) != TX_OK) {
            abort();
        }
    }

    if (rc == TX_DONE
        && (wb.overflow || (size_t) (wb.pos - wb.start) != size
            || memcmp(re, copy, size) != 0))
    {
        abort();
    }

    if (tx_key_rec_decode(copy, size, &k) == TX_OK) {
        tx_fuzz_in(&k.id, copy, size);
        tx_fuzz_in(&k.models, copy, size);
        tx_fuzz_in(&k.metadata, copy, size);
        (void) tx_glob_list_match(&k.models, k.name.data, k.name.len);
        (void) tx_glob_match(k.project.data, k.project.len, k.user.data,
                             k.user.len);
    }

    if (tx_khash_rec_decode(copy, size, &kh) == TX_OK) {
        tx_fuzz_in(&kh.key_id, copy, size);
    }

    if (tx_provider_rec_decode(copy, size, &pr) == TX_OK) {
        tx_fuzz_in(&pr.base_url, copy, size);
    }

    free(re);
    free(copy);

    return 0;
}
