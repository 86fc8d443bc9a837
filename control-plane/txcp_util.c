/*
 * torrix-cp: logging, time, byte and file helpers (see txcp.h).
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "txcp.h"


static const char *const txcp_level_names[] = {"debug", "info", "warn",
                                               "error"};


void
txcp_log(int level, const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    char    line[2048], ts[40];
    int     n;

    if (level < txcp.conf.log_level || level < 0 || level > TXCP_LOG_ERROR) {
        return;
    }

    txcp_time_format(txcp_now_us(), 3, ts, sizeof(ts));

    n = snprintf(line, sizeof(line), "%s %s %s", ts, txcp_level_names[level],
                 msg);

    if (kvfmt && n > 0 && (size_t) n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, kvfmt);
        vsnprintf(line + n, sizeof(line) - n, kvfmt, ap);
        va_end(ap);
    }

    fprintf(stderr, "%s\n", line);
}


int64_t
txcp_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


char *
txcp_time_format(int64_t us, int digits, char *buf, size_t len)
{
    time_t    t;
    struct tm tm;
    int64_t   frac;
    size_t    n;

    t = (time_t) (us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
    frac = us - (int64_t) t * 1000000;

    gmtime_r(&t, &tm);

    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);

    if (n == 0) {
        snprintf(buf, len, "1970-01-01T00:00:00Z");
        return buf;
    }

    if (digits == 3) {
        snprintf(buf + n, len - n, ".%03dZ", (int) (frac / 1000));

    } else if (digits == 6) {
        snprintf(buf + n, len - n, ".%06dZ", (int) frac);

    } else {
        snprintf(buf + n, len - n, "Z");
    }

    return buf;
}


static int
txcp_digits(const char *s, int n, int *out)
{
    int i, v;

    v = 0;

    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char) s[i])) {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return 0;
}


int
txcp_time_parse(const char *s, int64_t *secs)
{
    struct tm        tm;
    int              y, mo, d, h, mi, se, oh, om, sign;
    int64_t          t;
    const char      *p;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (strlen(s) < 20) {
        return TX_ERROR;
    }

    if (txcp_digits(s, 4, &y) || s[4] != '-' || txcp_digits(s + 5, 2, &mo)
        || s[7] != '-' || txcp_digits(s + 8, 2, &d)
        || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        || txcp_digits(s + 11, 2, &h) || s[13] != ':'
        || txcp_digits(s + 14, 2, &mi) || s[16] != ':'
        || txcp_digits(s + 17, 2, &se))
    {
        return TX_ERROR;
    }

    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23
        || mi > 59 || se > 60)
    {
        return TX_ERROR;
    }

    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return TX_ERROR;
    }

    p = s + 19;

    if (*p == '.') {
        p++;

        if (!isdigit((unsigned char) *p)) {
            return TX_ERROR;
        }

        while (isdigit((unsigned char) *p)) {
            p++;
        }
    }

    oh = 0;
    om = 0;
    sign = 1;

    if (*p == 'Z' || *p == 'z') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;

        if (txcp_digits(p + 1, 2, &oh) || p[3] != ':'
            || txcp_digits(p + 4, 2, &om) || oh > 23 || om > 59)
        {
            return TX_ERROR;
        }

        p += 6;

    } else {
        return TX_ERROR;
    }

    if (*p != '\0') {
        return TX_ERROR;
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;

    t = (int64_t) timegm(&tm);
    t -= sign * (oh * 3600 + om * 60);

    if (t < 0) {
        return TX_ERROR;
    }

    *secs = t;

    return TX_OK;
}


void
txcp_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t            i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }

    out[2 * n] = '\0';
}


int
txcp_unhex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n) {
        return TX_ERROR;
    }

    return tx_unhex(s, 2 * n, out);
}


void
txcp_put_le64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[i] = (uint8_t) (v >> (8 * i));
    }
}


uint64_t
txcp_get_le64(const uint8_t *p)
{
    uint64_t v;
    int      i;

    v = 0;

    for (i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }

    return v;
}


void
txcp_put_be64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[7 - i] = (uint8_t) (v >> (8 * i));
    }
}


uint64_t
txcp_get_be64(const uint8_t *p)
{
    uint64_t v;
    int      i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }

    return v;
}


char *
txcp_read_file(const char *path, size_t max, size_t *len, char *err,
               size_t errlen)
{
    FILE       *fp;
    char       *buf;
    struct stat st;

    fp = fopen(path, "rb");
    if (fp == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }

    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(fp);
        return NULL;
    }

    if ((size_t) st.st_size > max) {
        snprintf(err, errlen, "%s: over %zu bytes", path, max);
        fclose(fp);
        return NULL;
    }

    buf = malloc((size_t) st.st_size + 1);

    if (buf == NULL
        || fread(buf, 1, (size_t) st.st_size, fp) != (size_t) st.st_size)
    {
        snprintf(err, errlen, "cannot read %s", path);
        free(buf);
        fclose(fp);
        return NULL;
    }

    fclose(fp);

    buf[st.st_size] = '\0';
    *len = (size_t) st.st_size;

    return buf;
}
