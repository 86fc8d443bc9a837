/*
 * Torrix budget windows: days, weeks (starting Monday) and months, all in
 * UTC, numbered from the unix epoch so an index is a stable key.
 *
 *   day    index = floor(t / 86400)
 *   week   index = floor((t / 86400 + 3) / 7)   (1970-01-01 was a Thursday)
 *   month  index = (year - 1970) * 12 + (month - 1)
 */

#ifndef TX_WINDOW_H
#define TX_WINDOW_H


#include "tx_core.h"


#define TX_WIN_DAY   'd'
#define TX_WIN_WEEK  'w'
#define TX_WIN_MONTH 'm'


/* The index of the window of kind `kind` holding unix time t (seconds). */
uint32_t tx_window_index(int kind, int64_t t);

/* The unix time at which window `index` of kind `kind` starts. */
int64_t tx_window_start(int kind, uint32_t index);

/* Seconds from t until the window holding t ends (at least 1). */
int64_t tx_window_left(int kind, int64_t t);


#endif /* TX_WINDOW_H */
