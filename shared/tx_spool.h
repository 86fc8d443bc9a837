/*
 * Torrix spool: how nginx workers hand run records to torrix-cp.
 *
 * Each worker owns one spool file at a time, named
 *
 *     <spool dir>/<created unix usec, 16 hex digits>-<pid>.txs
 *
 * created at a fixed size (ftruncate, zero-filled) and mapped MAP_SHARED, so
 * appending a record is a memcpy (no syscall) and survives the worker being
 * killed: the pages belong to the page cache.  Files are recycled: torrix-cp
 * moves a file it has finished into <spool dir>/free/ (a few at most), and a
 * worker that needs a new file takes one from there before creating one, so
 * its pages are already in the page cache and on disk (a fresh file costs
 * the kernel a zeroed page and a block allocation every 4 KB).  The taking
 * is: rename to free/.claim-<pid>.txs, open, flock, write a new header and
 * a zero first length, then rename to its live name; a writer never changes
 * a file it does not hold the lock of, and a file is live only once it has
 * its new header.  The worker holds flock(LOCK_EX)
 * on the file while it writes; torrix-cp knows a file is finished when it is
 * sealed, or when it can take the lock itself (the writer is gone).
 *
 * Layout: a TX_SPOOL_HDR_LEN header, then frames from that offset:
 *
 *     uint32 len | uint32 crc32c(payload) | payload | zero pad to 8 bytes
 *
 * (little endian).  The writer stores payload and crc first, then zeroes
 * the length word after the frame (a recycled file has old frames there),
 * and `len` last (release store), so a reader that sees len != 0 sees the
 * whole frame and a stop after it.  Version 2 files seed the CRC with the
 * header's pid and creation time, so an old frame of a recycled file, should
 * one survive a machine crash on disk past the new ones, fails its CRC
 * instead of being read twice; version 1 (seed 0) is still read.
 *   len == 0                 no frame yet (or the writer died before it)
 *   len == TX_SPOOL_SEALED   the writer closed this file; nothing follows
 * A frame whose crc does not match (a torn write after a machine crash) is
 * skipped when its length is plausible; reading stops when it is not.
 *
 * The payload of a frame is a run record (TLV, tx_record.h, tags TX_RUN_*):
 * the module writes the compact form, torrix-cp reads either.
 *
 * torrix-cp keeps a cursor (file name -> offset of the next frame) in its
 * store and advances it in the same write transaction that inserts the runs,
 * so a crash of either side neither loses nor repeats a run; it unlinks a file
 * only after the cursor reached its end in a committed transaction.
 */

#ifndef TX_SPOOL_H
#define TX_SPOOL_H


#include "tx_core.h"


#define TX_SPOOL_MAGIC      "TXSPOOL1"
#define TX_SPOOL_HDR_LEN    64
#define TX_SPOOL_FRAME_HDR  8
#define TX_SPOOL_SEALED     0xffffffffu
#define TX_SPOOL_SUFFIX     ".txs"
#define TX_SPOOL_MAX_RECORD (1024 * 1024)


/* File header (all little endian) */
typedef struct {
    char     magic[8]; /* TX_SPOOL_MAGIC */
    uint32_t version;  /* 2 (1: frames' CRC seed 0) */
    uint32_t pid;
    int64_t  created_us;
    uint64_t capacity; /* file size in bytes */
    uint8_t  pad[32];
} tx_spool_hdr_t;


/* Writes a header for a new file into base (at least TX_SPOOL_HDR_LEN). */
void tx_spool_hdr_init(void *base, uint32_t pid, int64_t created_us,
                       uint64_t capacity);

/*
 * Checks a header (magic, version, a sane capacity); TX_OK or TX_ERROR.
 * It does not compare capacity with `size`: the caller compares it with the
 * file's size when that matters.
 */
int tx_spool_hdr_check(const void *base, size_t size);

/* The CRC seed of a file's frames, from its header (0 for version 1). */
uint32_t tx_spool_seed(const uint8_t *base);

/* Size a frame with `len` payload bytes takes, padding included. */
size_t tx_spool_frame_size(size_t len);

/*
 * Appends one frame at *off in a mapping of `cap` bytes.  Returns TX_OK and
 * advances *off, or TX_AGAIN when the frame (plus room for the seal) does not
 * fit: the caller seals this file and starts another.  TX_ERROR when len is
 * 0 or over TX_SPOOL_MAX_RECORD, or *off is not a frame offset (at least
 * TX_SPOOL_HDR_LEN, a multiple of 8).  `base` must be 4-byte aligned (an
 * mmap is): the length word is published with a release store.
 */
int tx_spool_append(uint8_t *base, size_t cap, size_t *off, const void *payload,
                    size_t len);

/* Marks the file finished at *off (room for it is always kept). */
void tx_spool_seal(uint8_t *base, size_t cap, size_t off);

/*
 * Reads the frame at *off of a file whose first `size` bytes are in `base`.
 * Returns:
 *   TX_OK     *payload and *len set, *off advanced past the frame
 *   TX_AGAIN  no frame (yet) at *off
 *   TX_DONE   sealed at *off
 *   TX_ERROR  torn frame skipped: *off advanced, nothing returned; or, when
 *             *off is unchanged, the rest of the file is unreadable
 */
int tx_spool_read(const uint8_t *base, size_t size, size_t *off,
                  const uint8_t **payload, size_t *len);

/*
 * CRC-32C (Castagnoli) of data, continuing crc (0 to start): the SSE4.2
 * instruction when the CPU has it, the same result from a table otherwise.
 */
uint32_t tx_crc32(uint32_t crc, const void *data, size_t len);


/* Run record tags (TLV payload of a spool frame, also the store's value) */
#define TX_RUN_ID                 1  /* 16 bytes: 6-byte ms time + 10 random */
#define TX_RUN_START_US           2  /* i64 unix microseconds */
#define TX_RUN_KEY_ID             3  /* str */
#define TX_RUN_PROJECT            4  /* str */
#define TX_RUN_ORG                5  /* str */
#define TX_RUN_USER               6  /* str: key owner */
#define TX_RUN_ENDPOINT           7  /* u64 TX_EP_* */
#define TX_RUN_MODEL_REQ          8  /* str: model the client asked for */
#define TX_RUN_MODEL              9  /* str: model actually served */
#define TX_RUN_PROVIDER           10 /* str */
#define TX_RUN_STATUS             11 /* u64 HTTP status sent to the client */
#define TX_RUN_UPSTREAM_STATUS    12 /* u64, 0 = no upstream response */
#define TX_RUN_LATENCY_US         13 /* u64 total */
#define TX_RUN_UPSTREAM_US        14 /* u64 upstream response time */
#define TX_RUN_TTFT_US            15 /* u64 time to first body byte */
#define TX_RUN_BYTES_IN           16 /* u64 request bytes */
#define TX_RUN_BYTES_OUT          17 /* u64 response bytes */
#define TX_RUN_TOKENS_IN          18 /* u64 */
#define TX_RUN_TOKENS_OUT         19 /* u64 */
#define TX_RUN_TOKENS_CACHE_READ  20 /* u64 */
#define TX_RUN_TOKENS_CACHE_WRITE 21 /* u64 */
#define TX_RUN_TOKENS_REASONING   22 /* u64 */
#define TX_RUN_COST               23 /* i64 money */
#define TX_RUN_FLAGS              24 /* u64 TX_RUNF_* */
#define TX_RUN_NAME               25 /* str: x-torrix-name */
#define TX_RUN_END_USER           26 /* str: x-torrix-user */
#define TX_RUN_TAGS               27 /* str: '\n'-separated k=v */
#define TX_RUN_ERROR_TYPE         28 /* str */
#define TX_RUN_ERROR              29 /* str: error message */
#define TX_RUN_REQ_BODY           30 /* bytes, when sampled or error */
#define TX_RUN_RESP_BODY          31 /* bytes, when sampled or error */
#define TX_RUN_METHOD             32 /* str */
#define TX_RUN_TARGET             33 /* str: upstream URL host (no secrets) */
#define TX_RUN_RESERVED           34 /* i64 money reserved at admission */
#define TX_RUN_EDGE               35 /* str: edge name */
#define TX_RUN_LIMIT                                                           \
    36 /* bytes: the spend key (tx_spend_key) of
                                    the budget that refused this request */
/*
 * bytes: one upstream attempt, a nested TLV of TX_ATT_*; repeated, in the
 * order tried (absent when the request never reached an upstream)
 */
#define TX_RUN_ATTEMPT 37

/* attempt values */
#define TX_ATT_MODEL    1 /* str: model sent upstream (no provider prefix) */
#define TX_ATT_PROVIDER 2 /* str */
#define TX_ATT_STATUS   3 /* u64 upstream HTTP status, 0 = no response */
#define TX_ATT_US       4 /* u64 time the attempt took */
/* str: "connect", "timeout", "http_500", ...; absent: it served */
#define TX_ATT_ERROR 5

#define TX_RUNF_SAMPLED   0x01
#define TX_RUNF_STREAM    0x02
#define TX_RUNF_CANCELLED 0x04
#define TX_RUNF_ERROR     0x08
#define TX_RUNF_UNPRICED  0x10
#define TX_RUNF_REJECTED  0x20 /* refused by the gateway itself */
#define TX_RUNF_TRUNCATED 0x40 /* a stored body was cut */
#define TX_RUNF_ESTIMATED                                                      \
    0x80 /* tokens estimated from delivered text
                                      (stream cut before its usage frame) */
#define TX_RUNF_USAGE_INJECTED                                                 \
    0x100 /* the gateway asked the provider for
                                        stream usage the client did not */

#define TX_EP_UNKNOWN     0
#define TX_EP_CHAT        1 /* /v1/chat/completions */
#define TX_EP_COMPLETIONS 2 /* /v1/completions */
#define TX_EP_EMBEDDINGS  3 /* /v1/embeddings */
#define TX_EP_RESPONSES   4 /* /v1/responses */
#define TX_EP_MODELS      5 /* /v1/models */
#define TX_EP_MESSAGES    6 /* /v1/messages (Anthropic) */
#define TX_EP_PROXY       7 /* /proxy */

/* Name of an endpoint ("chat.completions", ...); "unknown" if out of range */
const char *tx_endpoint_name(uint64_t ep);


#endif /* TX_SPOOL_H */
