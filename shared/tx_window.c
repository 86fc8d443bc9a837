/*
 * Torrix budget windows (tx_window.h).
 */

#include <string.h>

#include "tx_window.h"
#include "tx_snapshot.h"


/* days from 1970-01-01 to year-month-01 (proleptic Gregorian) */
static int64_t
tx_days_from_civil(int64_t y, unsigned m)
{
    int64_t  era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}


static void
tx_civil_from_days(int64_t z, int64_t *y, unsigned *m)
{
    int64_t  era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t) yoe + era * 400 + (*m <= 2);
}


uint32_t
tx_window_index(int kind, int64_t t)
{
    int64_t  days, y;
    unsigned m;

    if (t < 0) {
        t = 0;
    }

    days = t / 86400;

    switch (kind) {
    case TX_WIN_WEEK:
        return (uint32_t) ((days + 3) / 7);

    case TX_WIN_MONTH:
        tx_civil_from_days(days, &y, &m);
        return (uint32_t) ((y - 1970) * 12 + (m - 1));

    default:
        return (uint32_t) days;
    }
}


int64_t
tx_window_start(int kind, uint32_t index)
{
    switch (kind) {
    case TX_WIN_WEEK:
        return ((int64_t) index * 7 - 3) * 86400;

    case TX_WIN_MONTH:
        return tx_days_from_civil(1970 + index / 12, index % 12 + 1) * 86400;

    default:
        return (int64_t) index * 86400;
    }
}


int64_t
tx_window_left(int kind, int64_t t)
{
    int64_t end;

    end = tx_window_start(kind, tx_window_index(kind, t) + 1);

    return end - t > 0 ? end - t : 1;
}


size_t
tx_spend_key(uint8_t *out, int scope, int kind, uint32_t index,
             const uint8_t *id, size_t idlen)
{
    if (idlen > TX_ID_MAX_LEN) {
        idlen = TX_ID_MAX_LEN;
    }

    out[0] = (uint8_t) scope;
    out[1] = (uint8_t) kind;
    out[2] = (uint8_t) (index >> 24);
    out[3] = (uint8_t) (index >> 16);
    out[4] = (uint8_t) (index >> 8);
    out[5] = (uint8_t) index;

    if (idlen) {
        memcpy(out + 6, id, idlen);
    }

    return 6 + idlen;
}
