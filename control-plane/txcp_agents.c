/*
 * torrix-cp agent configurations (see txcp_routing.h): model_config.yaml
 * import and export through libyaml, /api/v1/agents and
 * `torrix-cp agents import|export`.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <microhttpd.h>
#include <sodium.h>
#include <yaml.h>

#include "tx_record.h"
#include "tx_snapshot.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_publish.h"
#include "txcp_routing.h"
#include "txcp_store.h"


#define TXCP_AGENT_ID_MAX    64
#define TXCP_AGENT_TEXT_MAX  200 /* name, role */
#define TXCP_AGENT_MODEL_MAX 127
#define TXCP_AGENTS_MAX      10000         /* agents in one file */
#define TXCP_AGENTS_FILE_MAX (1024 * 1024) /* the API's max_body cap too */

/*
 * libyaml's scanner is quadratic in the flow nesting depth and its loader in
 * the number of anchors: a first pass over the events caps both before the
 * document is loaded (a file needs 4 levels, and few anchors if any).
 */
#define TXCP_AGENTS_DEPTH_MAX   8
#define TXCP_AGENTS_ANCHORS_MAX 256

#define TXCP_TIER_N 3

/* which keys an agent mapping gave (duplicates are refused) */
#define TXCP_SEEN_ID     0x01
#define TXCP_SEEN_NAME   0x02
#define TXCP_SEEN_ROLE   0x04
#define TXCP_SEEN_MODELS 0x08
#define TXCP_SEEN_TIER   0x10 /* << tier */


/* One agent of a parsed file; the strings borrow from the YAML document. */
typedef struct {
    const char *id;
    const char *name;
    const char *role;
    const char *model[TXCP_TIER_N];
    size_t      line; /* 1-based, of the agent's mapping */
    size_t      model_line[TXCP_TIER_N];
    size_t      first_line; /* of an earlier agent with this id, else 0 */
} txcp_agent_t;


typedef struct {
    yaml_document_t doc;
    int             loaded;
    txcp_agent_t   *agents; /* file order */
    txcp_agent_t  **sorted; /* by id, then line */
    size_t          n;
    size_t          line; /* of the error, 0 when none */
    char           *err;
    size_t          errlen;
} txcp_agents_file_t;


typedef struct {
    char  *data;
    size_t len;
    size_t cap;
} txcp_agents_buf_t;


static int txcp_agents_fail(txcp_agents_file_t *f, size_t line, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));


static const char *const txcp_tiers[TXCP_TIER_N] = {"normal", "heavy", "max"};


static const txcp_field_t txcp_agent_fields[] =
    {{"agent_id", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"name", TXCP_F_STR, 0, 0, 0, NULL, 0, NULL},
     {"role", TXCP_F_STR, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"normal", TXCP_F_STR, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"heavy", TXCP_F_STR, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"max", TXCP_F_STR, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"created_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"updated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


int
txcp_pub_agent(MDB_txn *rtxn, MDB_txn *txn, const char *id)
{
    int       i;
    uint8_t   buf[2048];
    cJSON    *rec;
    tx_wbuf_t wb;

    static const uint16_t tags[TXCP_TIER_N] = {TX_AG_NORMAL, TX_AG_HEAVY,
                                               TX_AG_MAX};

    rec = txcp_store_get(rtxn, TXCP_DB_AGENTS, id);

    if (rec == NULL) {
        return txcp_snap_del(txn, TXCP_SDB_AGENTS, id, strlen(id));
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_AG_ID, id);
    tx_rec_put_cstr(&wb, TX_AG_NAME, txcp_json_str(rec, "name"));
    tx_rec_put_cstr(&wb, TX_AG_ROLE, txcp_json_str(rec, "role"));

    for (i = 0; i < TXCP_TIER_N; i++) {
        tx_rec_put_cstr(&wb, tags[i], txcp_json_str(rec, txcp_tiers[i]));
    }

    cJSON_Delete(rec);

    if (wb.overflow) {
        return ENOMEM;
    }

    return txcp_snap_put(txn, TXCP_SDB_AGENTS, id, strlen(id), buf,
                         wb.pos - wb.start);
}


/* -- parsing ------------------------------------------------------------ */


/* Sets the error "line N: ..." of f; returns TX_DECLINED. */
static int
txcp_agents_fail(txcp_agents_file_t *f, size_t line, const char *fmt, ...)
{
    int     n;
    va_list ap;

    f->line = line;

    n = snprintf(f->err, f->errlen, "line %zu: ", line);

    if (n > 0 && (size_t) n < f->errlen) {
        va_start(ap, fmt);
        vsnprintf(f->err + n, f->errlen - n, fmt, ap);
        va_end(ap);
    }

    return TX_DECLINED;
}


static size_t
txcp_agents_line(const yaml_node_t *node)
{
    return node->start_mark.line + 1;
}


/* A libyaml error: "line N, column M: problem".  TX_DECLINED or TX_ERROR. */
static int
txcp_agents_syntax(txcp_agents_file_t *f, const yaml_parser_t *p,
                   const char *text, size_t len)
{
    size_t i, line, col;

    if (p->error == YAML_MEMORY_ERROR || p->error == YAML_NO_ERROR) {
        return TX_ERROR;
    }

    if (p->error == YAML_READER_ERROR) {
        /* only the byte offset is known: count the lines up to it */

        line = 1;
        col = 1;

        for (i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;

            } else {
                col++;
            }
        }

    } else {
        line = p->problem_mark.line + 1;
        col = p->problem_mark.column + 1;
    }

    f->line = line;

    if (p->context && p->error != YAML_READER_ERROR) {
        snprintf(f->err, f->errlen, "line %zu, column %zu: %s (%s at line %zu)",
                 line, col, p->problem ? p->problem : "syntax error",
                 p->context, p->context_mark.line + 1);

    } else {
        snprintf(f->err, f->errlen, "line %zu, column %zu: %s", line, col,
                 p->problem ? p->problem : "syntax error");
    }

    return TX_DECLINED;
}


/*
 * The first pass (see TXCP_AGENTS_DEPTH_MAX): TX_OK, TX_DECLINED with the
 * error in f, TX_ERROR.
 */
static int
txcp_agents_prescan(txcp_agents_file_t *f, const char *text, size_t len)
{
    int           rc, depth, anchors, end;
    yaml_event_t  ev;
    yaml_parser_t parser;

    if (!yaml_parser_initialize(&parser)) {
        return TX_ERROR;
    }

    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);

    rc = TX_OK;
    depth = 0;
    anchors = 0;

    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = txcp_agents_syntax(f, &parser, text, len);
            break;
        }

        switch (ev.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchors += ev.type == YAML_MAPPING_START_EVENT
                           ? ev.data.mapping_start.anchor != NULL
                           : ev.data.sequence_start.anchor != NULL;

            if (++depth > TXCP_AGENTS_DEPTH_MAX) {
                rc = txcp_agents_fail(f, ev.start_mark.line + 1,
                                      "nested deeper than %d levels",
                                      TXCP_AGENTS_DEPTH_MAX);
            }

            break;

        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;

        case YAML_SCALAR_EVENT:
            anchors += ev.data.scalar.anchor != NULL;
            break;

        case YAML_ALIAS_EVENT:
            anchors++;
            break;

        default:
            break;
        }

        if (rc == TX_OK && anchors > TXCP_AGENTS_ANCHORS_MAX) {
            rc = txcp_agents_fail(f, ev.start_mark.line + 1,
                                  "more than %d anchors and aliases",
                                  TXCP_AGENTS_ANCHORS_MAX);
        }

        end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);

        if (rc != TX_OK || end) {
            break;
        }
    }

    yaml_parser_delete(&parser);

    return rc;
}


/* A plain scalar that YAML reads as null. */
static int
txcp_agents_is_null(const yaml_node_t *v)
{
    const char *s;

    if (v->type != YAML_SCALAR_NODE
        || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    {
        return 0;
    }

    s = (const char *) v->data.scalar.value;

    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0
           || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}


/*
 * The text of scalar v, the value of key: *s is NULL for a null or an empty
 * string.  Returns TX_OK or TX_DECLINED.
 */
static int
txcp_agents_str(txcp_agents_file_t *f, const yaml_node_t *v, const char *key,
                size_t max, const char **s)
{
    size_t         len, i;
    const uint8_t *p;

    *s = NULL;

    if (v->type != YAML_SCALAR_NODE) {
        return txcp_agents_fail(f, txcp_agents_line(v),
                                "\"%s\" must be a string", key);
    }

    if (txcp_agents_is_null(v)) {
        return TX_OK;
    }

    p = v->data.scalar.value;
    len = v->data.scalar.length;

    if (len == 0) {
        return TX_OK;
    }

    if (len > max) {
        return txcp_agents_fail(f, txcp_agents_line(v),
                                "\"%s\" is over %zu bytes", key, max);
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            return txcp_agents_fail(f, txcp_agents_line(v),
                                    "\"%s\" contains a control character", key);
        }
    }

    *s = (const char *) p;

    return TX_OK;
}


static int
txcp_agents_id_ok(const char *id)
{
    size_t      len;
    const char *p;

    len = strlen(id);

    if (len == 0 || len > TXCP_AGENT_ID_MAX) {
        return 0;
    }

    for (p = id; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* A tier's model: value v of tier t in agent a. */
static int
txcp_agents_tier(txcp_agents_file_t *f, txcp_agent_t *a, unsigned *seen,
                 const yaml_node_t *k, const yaml_node_t *v, int t)
{
    int         rc;
    const char *s, *p;

    if (*seen & (TXCP_SEEN_TIER << t)) {
        return txcp_agents_fail(f, txcp_agents_line(k),
                                "tier \"%s\" given twice", txcp_tiers[t]);
    }

    *seen |= TXCP_SEEN_TIER << t;

    rc = txcp_agents_str(f, v, txcp_tiers[t], TXCP_AGENT_MODEL_MAX, &s);
    if (rc != TX_OK) {
        return rc;
    }

    if (s == NULL) {
        return TX_OK;
    }

    for (p = s; *p; p++) {
        if (*p == ' ') {
            return txcp_agents_fail(f, txcp_agents_line(v),
                                    "bad model name \"%s\" (tier %s)", s,
                                    txcp_tiers[t]);
        }
    }

    a->model[t] = s;
    a->model_line[t] = txcp_agents_line(v);

    return TX_OK;
}


static int
txcp_agents_tier_index(const char *key)
{
    int t;

    for (t = 0; t < TXCP_TIER_N; t++) {
        if (strcmp(key, txcp_tiers[t]) == 0) {
            return t;
        }
    }

    return -1;
}


static int
txcp_agents_models(txcp_agents_file_t *f, txcp_agent_t *a, unsigned *seen,
                   const yaml_node_t *v)
{
    int               rc, t;
    const char       *key;
    yaml_node_t      *k, *mv;
    yaml_node_pair_t *p;

    if (txcp_agents_is_null(v)) {
        return TX_OK;
    }

    if (v->type != YAML_MAPPING_NODE) {
        return txcp_agents_fail(f, txcp_agents_line(v),
                                "\"models\" must be a mapping of normal, "
                                "heavy, max");
    }

    for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        k = yaml_document_get_node(&f->doc, p->key);
        mv = yaml_document_get_node(&f->doc, p->value);

        key = k->type == YAML_SCALAR_NODE ? (const char *) k->data.scalar.value
                                          : "";
        t = txcp_agents_tier_index(key);

        if (t < 0) {
            return txcp_agents_fail(f, txcp_agents_line(k),
                                    "unknown key \"%.64s\" in models "
                                    "(expected normal, heavy, max)",
                                    key);
        }

        rc = txcp_agents_tier(f, a, seen, k, mv, t);
        if (rc != TX_OK) {
            return rc;
        }
    }

    return TX_OK;
}


static int
txcp_agents_agent(txcp_agents_file_t *f, const yaml_node_t *node,
                  txcp_agent_t *a)
{
    int               rc, t;
    unsigned          seen;
    const char       *key;
    yaml_node_t      *k, *v;
    yaml_node_pair_t *p;

    a->line = txcp_agents_line(node);

    if (node->type != YAML_MAPPING_NODE) {
        return txcp_agents_fail(f, a->line,
                                "an agent must be a mapping of agent_id, "
                                "name, role, normal, heavy, max");
    }

    seen = 0;

    for (p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        k = yaml_document_get_node(&f->doc, p->key);
        v = yaml_document_get_node(&f->doc, p->value);

        if (k->type != YAML_SCALAR_NODE) {
            return txcp_agents_fail(f, txcp_agents_line(k),
                                    "keys must be strings");
        }

        key = (const char *) k->data.scalar.value;

        if (strcmp(key, "agent_id") == 0 || strcmp(key, "id") == 0) {
            if (seen & TXCP_SEEN_ID) {
                return txcp_agents_fail(f, txcp_agents_line(k),
                                        "agent_id given twice");
            }

            seen |= TXCP_SEEN_ID;
            rc = txcp_agents_str(f, v, key, TXCP_AGENT_TEXT_MAX, &a->id);

            if (rc == TX_OK && a->id && !txcp_agents_id_ok(a->id)) {
                return txcp_agents_fail(f, txcp_agents_line(v),
                                        "bad agent_id \"%.80s\": 1..64 of "
                                        "A-Z a-z 0-9 . _ -",
                                        a->id);
            }

        } else if (strcmp(key, "name") == 0) {
            if (seen & TXCP_SEEN_NAME) {
                return txcp_agents_fail(f, txcp_agents_line(k),
                                        "duplicate key \"name\"");
            }

            seen |= TXCP_SEEN_NAME;
            rc = txcp_agents_str(f, v, key, TXCP_AGENT_TEXT_MAX, &a->name);

        } else if (strcmp(key, "role") == 0) {
            if (seen & TXCP_SEEN_ROLE) {
                return txcp_agents_fail(f, txcp_agents_line(k),
                                        "duplicate key \"role\"");
            }

            seen |= TXCP_SEEN_ROLE;
            rc = txcp_agents_str(f, v, key, TXCP_AGENT_TEXT_MAX, &a->role);

        } else if (strcmp(key, "models") == 0) {
            if (seen & TXCP_SEEN_MODELS) {
                return txcp_agents_fail(f, txcp_agents_line(k),
                                        "duplicate key \"models\"");
            }

            seen |= TXCP_SEEN_MODELS;
            rc = txcp_agents_models(f, a, &seen, v);

        } else if ((t = txcp_agents_tier_index(key)) >= 0) {
            rc = txcp_agents_tier(f, a, &seen, k, v, t);

        } else {
            return txcp_agents_fail(f, txcp_agents_line(k),
                                    "unknown key \"%.64s\" (expected "
                                    "agent_id, name, role, normal, heavy, "
                                    "max, models)",
                                    key);
        }

        if (rc != TX_OK) {
            return rc;
        }
    }

    if (a->id == NULL) {
        return txcp_agents_fail(f, a->line, "agent without agent_id");
    }

    if (a->name == NULL) {
        a->name = a->id;
    }

    for (t = 0; t < TXCP_TIER_N; t++) {
        if (a->model[t]) {
            return TX_OK;
        }
    }

    return txcp_agents_fail(f, a->line,
                            "agent \"%s\" has no model: give at least one of "
                            "normal, heavy, max",
                            a->id);
}


static int
txcp_agents_cmp(const void *one, const void *two)
{
    int                 rc;
    const txcp_agent_t *a, *b;

    a = *(const txcp_agent_t *const *) one;
    b = *(const txcp_agent_t *const *) two;

    rc = strcmp(a->id, b->id);

    if (rc != 0) {
        return rc;
    }

    return a->line < b->line ? -1 : a->line > b->line;
}


/* Sorts the agents by id and marks the later ones of a duplicated id. */
static int
txcp_agents_sort(txcp_agents_file_t *f)
{
    size_t i;

    f->sorted = malloc((f->n ? f->n : 1) * sizeof(txcp_agent_t *));
    if (f->sorted == NULL) {
        return TX_ERROR;
    }

    for (i = 0; i < f->n; i++) {
        f->sorted[i] = &f->agents[i];
    }

    qsort(f->sorted, f->n, sizeof(txcp_agent_t *), txcp_agents_cmp);

    for (i = 1; i < f->n; i++) {
        if (strcmp(f->sorted[i]->id, f->sorted[i - 1]->id) == 0) {
            f->sorted[i]->first_line = f->sorted[i - 1]->first_line
                                           ? f->sorted[i - 1]->first_line
                                           : f->sorted[i - 1]->line;
        }
    }

    return TX_OK;
}


/* Returns 1 when the file has an agent with this id. */
static int
txcp_agents_has(const txcp_agents_file_t *f, const char *id)
{
    int    rc;
    size_t lo, hi, mid;

    lo = 0;
    hi = f->n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        rc = strcmp(id, f->sorted[mid]->id);

        if (rc == 0) {
            return 1;
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return 0;
}


static void
txcp_agents_free(txcp_agents_file_t *f)
{
    if (f->loaded) {
        yaml_document_delete(&f->doc);
        f->loaded = 0;
    }

    free(f->agents);
    free(f->sorted);
    f->agents = NULL;
    f->sorted = NULL;
}


/*
 * Parses a model_config.yaml into f (the caller frees it with
 * txcp_agents_free() whatever the result).  TX_OK, TX_DECLINED with the
 * error in f, TX_ERROR (out of memory).
 */
static int
txcp_agents_parse(txcp_agents_file_t *f, const char *text, size_t len)
{
    int               rc;
    size_t            i;
    const char       *key;
    yaml_node_t      *root, *k, *v, *list;
    yaml_parser_t     parser;
    yaml_document_t   extra;
    yaml_node_item_t *it;
    yaml_node_pair_t *p;

    rc = txcp_agents_prescan(f, text, len);
    if (rc != TX_OK) {
        return rc;
    }

    if (!yaml_parser_initialize(&parser)) {
        return TX_ERROR;
    }

    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);

    if (!yaml_parser_load(&parser, &f->doc)) {
        rc = txcp_agents_syntax(f, &parser, text, len);
        goto done;
    }

    f->loaded = 1;

    root = yaml_document_get_root_node(&f->doc);

    if (root == NULL) {
        rc = txcp_agents_fail(f, 1,
                              "empty document: expected a mapping with an "
                              "\"agents\" list");
        goto done;
    }

    if (!yaml_parser_load(&parser, &extra)) {
        rc = txcp_agents_syntax(f, &parser, text, len);
        goto done;
    }

    if (yaml_document_get_root_node(&extra) != NULL) {
        i = txcp_agents_line(yaml_document_get_root_node(&extra));
        yaml_document_delete(&extra);
        rc = txcp_agents_fail(f, i, "only one YAML document is allowed");
        goto done;
    }

    yaml_document_delete(&extra);

    if (root->type != YAML_MAPPING_NODE) {
        rc = txcp_agents_fail(f, txcp_agents_line(root),
                              "expected a mapping with an \"agents\" list");
        goto done;
    }

    list = NULL;

    for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        k = yaml_document_get_node(&f->doc, p->key);
        v = yaml_document_get_node(&f->doc, p->value);

        key = k->type == YAML_SCALAR_NODE ? (const char *) k->data.scalar.value
                                          : "";

        if (strcmp(key, "agents") != 0) {
            rc = txcp_agents_fail(f, txcp_agents_line(k),
                                  "unknown key \"%.64s\" (expected agents)",
                                  key);
            goto done;
        }

        if (list) {
            rc = txcp_agents_fail(f, txcp_agents_line(k),
                                  "duplicate key \"agents\"");
            goto done;
        }

        list = v;
    }

    if (list == NULL) {
        rc = txcp_agents_fail(f, txcp_agents_line(root), "no \"agents\" list");
        goto done;
    }

    if (txcp_agents_is_null(list)) {
        f->n = 0;

    } else if (list->type != YAML_SEQUENCE_NODE) {
        rc = txcp_agents_fail(f, txcp_agents_line(list),
                              "\"agents\" must be a list");
        goto done;

    } else {
        f->n = list->data.sequence.items.top - list->data.sequence.items.start;
    }

    if (f->n > TXCP_AGENTS_MAX) {
        rc = txcp_agents_fail(f, txcp_agents_line(list), "more than %d agents",
                              TXCP_AGENTS_MAX);
        goto done;
    }

    f->agents = calloc(f->n ? f->n : 1, sizeof(txcp_agent_t));
    if (f->agents == NULL) {
        rc = TX_ERROR;
        goto done;
    }

    for (i = 0; i < f->n; i++) {
        it = &list->data.sequence.items.start[i];

        rc = txcp_agents_agent(f, yaml_document_get_node(&f->doc, *it),
                               &f->agents[i]);
        if (rc != TX_OK) {
            goto done;
        }
    }

    rc = txcp_agents_sort(f);

done:

    yaml_parser_delete(&parser);

    return rc;
}


int
txcp_agents_parse_text(const char *text, size_t len, char *err, size_t errlen)
{
    int                rc;
    txcp_agents_file_t f;

    memset(&f, 0, sizeof(f));
    f.err = err;
    f.errlen = errlen;
    err[0] = '\0';

    rc = txcp_agents_parse(&f, text, len);

    txcp_agents_free(&f);

    if (rc == TX_OK) {
        return TX_OK;
    }

    if (rc == TX_ERROR) {
        snprintf(err, errlen, "out of memory");
    }

    return TX_ERROR;
}


/* What needs the store: duplicate ids and unknown models, in file order. */
static int
txcp_agents_check(txcp_agents_file_t *f, MDB_txn *txn)
{
    int           t;
    size_t        i;
    txcp_agent_t *a;

    for (i = 0; i < f->n; i++) {
        a = &f->agents[i];

        if (a->first_line) {
            return txcp_agents_fail(f, a->line,
                                    "duplicate agent_id \"%s\" (first at "
                                    "line %zu)",
                                    a->id, a->first_line);
        }

        for (t = 0; t < TXCP_TIER_N; t++) {
            if (a->model[t] && !txcp_model_known(txn, a->model[t])) {
                return txcp_agents_fail(f, a->model_line[t],
                                        "unknown model \"%s\" for agent "
                                        "\"%s\" (tier %s)",
                                        a->model[t], a->id, txcp_tiers[t]);
            }
        }
    }

    return TX_OK;
}


/* -- import ------------------------------------------------------------- */


static void
txcp_agents_set(cJSON *rec, const char *name, const char *s)
{
    txcp_json_set(rec, name, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}


/* The store record of agent a; created_at kept from old. */
static cJSON *
txcp_agents_record(const txcp_agent_t *a, const cJSON *old, const char *now)
{
    int         t;
    cJSON      *rec;
    const char *created;

    rec = cJSON_CreateObject();
    if (rec == NULL) {
        return NULL;
    }

    created = old ? txcp_json_str(old, "created_at") : NULL;

    txcp_agents_set(rec, "agent_id", a->id);
    txcp_agents_set(rec, "name", a->name);
    txcp_agents_set(rec, "role", a->role);

    for (t = 0; t < TXCP_TIER_N; t++) {
        txcp_agents_set(rec, txcp_tiers[t], a->model[t]);
    }

    txcp_agents_set(rec, "created_at", created ? created : now);
    txcp_agents_set(rec, "updated_at", now);

    return rec;
}


static int
txcp_agents_pub_add(txcp_pub_t **pub, size_t *n, size_t *cap, const char *id)
{
    txcp_pub_t *p;

    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        p = realloc(*pub, *cap * sizeof(txcp_pub_t));

        if (p == NULL) {
            return TX_ERROR;
        }

        *pub = p;
    }

    memset(&(*pub)[*n], 0, sizeof(txcp_pub_t));
    (*pub)[*n].kind = TXCP_PUB_AGENT;
    snprintf((*pub)[*n].id, sizeof((*pub)[*n].id), "%s", id);
    (*n)++;

    return TX_OK;
}


/* Deletes the stored agents the file does not name (?replace=true). */
static int
txcp_agents_replace(const txcp_agents_file_t *f, MDB_txn *txn, txcp_pub_t **pub,
                    size_t *npub, size_t *cap, int *deleted)
{
    int         rc;
    char        id[TXCP_AGENT_ID_MAX + 1];
    MDB_val     k, v;
    MDB_cursor *cur;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_AGENTS], &cur);
    if (rc != 0) {
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == 0 || k.mv_size >= sizeof(id)) {
            continue;
        }

        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = '\0';

        if (txcp_agents_has(f, id)) {
            continue;
        }

        if (txcp_agents_pub_add(pub, npub, cap, id) != TX_OK) {
            break;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }

        (*deleted)++;
    }

    mdb_cursor_close(cur);

    return rc == MDB_NOTFOUND ? TX_OK : TX_ERROR;
}


/*
 * Imports model_config.yaml text in one store txn audited as actor, then
 * publishes the changed agents.  Returns TX_OK with *out =
 * {"imported","created","updated","unchanged","deleted","agents":[...]}
 * (the caller owns it); TX_DECLINED with "line N...: ..." in err and the
 * line in *line, nothing written; TX_ERROR on a store failure.
 */
static int
txcp_agents_import(const char *text, size_t len, int replace, const char *actor,
                   cJSON **out, size_t *line, char *err, size_t errlen)
{
    int                rc, created, updated, unchanged, deleted;
    char               now[40];
    size_t             i, npub, cap;
    cJSON             *list, *old, *rec, *diff;
    MDB_txn           *txn;
    txcp_pub_t        *pub;
    txcp_agent_t      *a;
    txcp_agents_file_t f;

    memset(&f, 0, sizeof(f));
    f.err = err;
    f.errlen = errlen;
    err[0] = '\0';

    *out = NULL;
    *line = 0;

    txn = NULL;
    list = NULL;
    pub = NULL;
    npub = 0;
    cap = 0;

    rc = txcp_agents_parse(&f, text, len);
    if (rc != TX_OK) {
        goto done;
    }

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        rc = TX_ERROR;
        goto done;
    }

    rc = txcp_agents_check(&f, txn);
    if (rc != TX_OK) {
        goto done;
    }

    rc = TX_ERROR;

    txcp_time_format(txcp_now_us(), 0, now, sizeof(now));

    list = cJSON_CreateArray();
    if (list == NULL) {
        goto done;
    }

    created = 0;
    updated = 0;
    unchanged = 0;
    deleted = 0;

    for (i = 0; i < f.n; i++) {
        a = &f.agents[i];

        old = txcp_store_get(txn, TXCP_DB_AGENTS, a->id);
        rec = txcp_agents_record(a, old, now);

        if (rec == NULL) {
            cJSON_Delete(old);
            goto done;
        }

        diff = cJSON_CreateObject();
        txcp_json_diff(txcp_agent_fields, old, rec, diff);

        if (old && diff && diff->child == NULL) {
            unchanged++;
            cJSON_AddItemToArray(list,
                                 txcp_json_output(txcp_agent_fields, old));
            cJSON_Delete(rec);
            rec = NULL;

        } else {
            if (old) {
                updated++;

            } else {
                created++;
            }

            cJSON_AddItemToArray(list,
                                 txcp_json_output(txcp_agent_fields, rec));
        }

        cJSON_Delete(diff);
        cJSON_Delete(old);

        if (rec == NULL) {
            continue;
        }

        if (txcp_store_put(txn, TXCP_DB_AGENTS, a->id, rec) != TX_OK
            || txcp_agents_pub_add(&pub, &npub, &cap, a->id) != TX_OK)
        {
            cJSON_Delete(rec);
            goto done;
        }

        cJSON_Delete(rec);
    }

    if (replace
        && txcp_agents_replace(&f, txn, &pub, &npub, &cap, &deleted) != TX_OK)
    {
        goto done;
    }

    diff = cJSON_CreateObject();
    txcp_audit_diff(diff, "imported", NULL, cJSON_CreateNumber((double) f.n));
    txcp_audit_diff(diff, "created", NULL, cJSON_CreateNumber(created));
    txcp_audit_diff(diff, "updated", NULL, cJSON_CreateNumber(updated));
    txcp_audit_diff(diff, "unchanged", NULL, cJSON_CreateNumber(unchanged));
    txcp_audit_diff(diff, "deleted", NULL, cJSON_CreateNumber(deleted));
    txcp_audit_diff(diff, "replace", NULL, cJSON_CreateBool(replace));

    rc = txcp_audit_append(txn, actor, "agents.import", "agents",
                           "model_config", diff);
    cJSON_Delete(diff);

    if (rc != TX_OK) {
        rc = TX_ERROR;
        goto done;
    }

    rc = txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
    txn = NULL;

    if (rc != TX_OK) {
        goto done;
    }

    if (npub) {
        txcp_publish(pub, npub);
    }

    txcp_log(TXCP_LOG_INFO, "agents imported",
             "imported=%zu created=%d updated=%d unchanged=%d deleted=%d "
             "actor=%s",
             f.n, created, updated, unchanged, deleted, actor);

    *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(*out, "imported", (double) f.n);
    cJSON_AddNumberToObject(*out, "created", created);
    cJSON_AddNumberToObject(*out, "updated", updated);
    cJSON_AddNumberToObject(*out, "unchanged", unchanged);
    cJSON_AddNumberToObject(*out, "deleted", deleted);
    cJSON_AddItemToObject(*out, "agents", list);
    list = NULL;

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (rc == TX_DECLINED) {
        *line = f.line;
    }

    free(pub);
    cJSON_Delete(list);
    txcp_agents_free(&f);

    return rc;
}


/* -- export ------------------------------------------------------------- */


static int
txcp_agents_write(void *data, unsigned char *buffer, size_t size)
{
    char              *p;
    size_t             cap;
    txcp_agents_buf_t *b;

    b = data;

    if (b->len + size + 1 > b->cap) {
        cap = b->cap ? b->cap : 4096;

        while (b->len + size + 1 > cap) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            return 0;
        }

        b->data = p;
        b->cap = cap;
    }

    memcpy(b->data + b->len, buffer, size);
    b->len += size;
    b->data[b->len] = '\0';

    return 1;
}


/* A string another YAML reader would take for a null, bool or number. */
static int
txcp_agents_ambiguous(const char *s)
{
    static const char *const words[] = {"~",   "null", "true", "false",
                                        "yes", "no",   "on",   "off",
                                        "y",   "n",    NULL};
    int                      i;

    for (i = 0; words[i]; i++) {
        if (strcasecmp(s, words[i]) == 0) {
            return 1;
        }
    }

    return s[0] == '\0' || (s[0] >= '0' && s[0] <= '9') || s[0] == '+'
           || s[0] == '-' || s[0] == '.';
}


static int
txcp_agents_emit(yaml_emitter_t *e, yaml_event_t *ev, int ok)
{
    if (!ok) {
        return TX_ERROR;
    }

    return yaml_emitter_emit(e, ev) ? TX_OK : TX_ERROR;
}


static int
txcp_agents_scalar(yaml_emitter_t *e, const char *s, int key)
{
    int                 ok;
    yaml_event_t        ev;
    yaml_scalar_style_t style;
    const yaml_char_t  *v;

    if (key) {
        style = YAML_PLAIN_SCALAR_STYLE;

    } else if (txcp_agents_ambiguous(s)) {
        style = YAML_SINGLE_QUOTED_SCALAR_STYLE;

    } else {
        style = YAML_ANY_SCALAR_STYLE;
    }

    v = (const yaml_char_t *) s;
    ok = yaml_scalar_event_initialize(&ev, NULL, NULL, v, (int) strlen(s), 1, 1,
                                      style);

    return txcp_agents_emit(e, &ev, ok);
}


static int
txcp_agents_emit_agent(yaml_emitter_t *e, const cJSON *rec)
{
    int          t;
    yaml_event_t ev;
    const char  *fields[] = {"agent_id", "name", "role", "normal",
                             "heavy",    "max",  NULL};
    const char  *s;

    if (txcp_agents_emit(e, &ev,
                         yaml_mapping_start_event_initialize(
                             &ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE))
        != TX_OK)
    {
        return TX_ERROR;
    }

    for (t = 0; fields[t]; t++) {
        s = txcp_json_str(rec, fields[t]);

        if (s == NULL || s[0] == '\0') {
            continue;
        }

        if (txcp_agents_scalar(e, fields[t], 1) != TX_OK
            || txcp_agents_scalar(e, s, 0) != TX_OK)
        {
            return TX_ERROR;
        }
    }

    return txcp_agents_emit(e, &ev, yaml_mapping_end_event_initialize(&ev));
}


/*
 * Every stored agent as a model_config.yaml (malloc'd, NUL-terminated, the
 * caller frees *text).  TX_OK or TX_ERROR.
 */
static int
txcp_agents_yaml(MDB_txn *txn, char **text, size_t *len)
{
    int               rc;
    cJSON            *rec;
    MDB_val           k, v;
    MDB_cursor       *cur;
    yaml_event_t      ev;
    yaml_emitter_t    e;
    txcp_agents_buf_t b;

    static const char head[] = "# Torrix agent configurations "
                               "(model_config.yaml)\n";

    memset(&b, 0, sizeof(b));

    if (!txcp_agents_write(&b, (unsigned char *) head, sizeof(head) - 1)) {
        return TX_ERROR;
    }

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_AGENTS], &cur) != 0) {
        free(b.data);
        return TX_ERROR;
    }

    if (!yaml_emitter_initialize(&e)) {
        mdb_cursor_close(cur);
        free(b.data);
        return TX_ERROR;
    }

    yaml_emitter_set_output(&e, txcp_agents_write, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);

    rc = TX_ERROR;

    if (txcp_agents_emit(&e, &ev,
                         yaml_stream_start_event_initialize(&ev,
                                                            YAML_UTF8_ENCODING))
            != TX_OK
        || txcp_agents_emit(&e, &ev,
                            yaml_document_start_event_initialize(&ev, NULL,
                                                                 NULL, NULL, 1))
               != TX_OK
        || txcp_agents_emit(&e, &ev,
                            yaml_mapping_start_event_initialize(
                                &ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE))
               != TX_OK
        || txcp_agents_scalar(&e, "agents", 1) != TX_OK
        || txcp_agents_emit(&e, &ev,
                            yaml_sequence_start_event_initialize(
                                &ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE))
               != TX_OK)
    {
        goto done;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec == NULL) {
            continue;
        }

        rc = txcp_agents_emit_agent(&e, rec);
        cJSON_Delete(rec);

        if (rc != TX_OK) {
            rc = TX_ERROR;
            goto done;
        }
    }

    if (rc != MDB_NOTFOUND
        || txcp_agents_emit(&e, &ev, yaml_sequence_end_event_initialize(&ev))
               != TX_OK
        || txcp_agents_emit(&e, &ev, yaml_mapping_end_event_initialize(&ev))
               != TX_OK
        || txcp_agents_emit(&e, &ev, yaml_document_end_event_initialize(&ev, 1))
               != TX_OK
        || txcp_agents_emit(&e, &ev, yaml_stream_end_event_initialize(&ev))
               != TX_OK
        || !yaml_emitter_flush(&e))
    {
        rc = TX_ERROR;
        goto done;
    }

    rc = TX_OK;

done:

    yaml_emitter_delete(&e);
    mdb_cursor_close(cur);

    if (rc != TX_OK) {
        free(b.data);
        return TX_ERROR;
    }

    *text = b.data;
    *len = b.len;

    return TX_OK;
}


/* -- API ---------------------------------------------------------------- */


static cJSON *
txcp_agents_item(txcp_req_t *r, const cJSON *rec)
{
    return txcp_json_output(txcp_agent_fields, rec);
}


void
txcp_api_agents_list(txcp_req_t *r)
{
    txcp_api_list(r, TXCP_DB_AGENTS, txcp_agents_item);
}


void
txcp_api_agents_get(txcp_req_t *r)
{
    txcp_api_get(r, TXCP_DB_AGENTS, "agent", txcp_agents_item, cJSON_Delete);
}


void
txcp_api_agents_delete(txcp_req_t *r)
{
    int      rc;
    cJSON   *rec, *diff, *out;
    MDB_txn *txn;

    if (txcp_api_get_for_write(r, TXCP_DB_AGENTS, "agent", &txn, &rec) != TX_OK)
    {
        return;
    }

    diff = cJSON_CreateObject();
    txcp_json_diff(txcp_agent_fields, rec, NULL, diff);

    rc = txcp_api_commit(r, txn, TXCP_DB_AGENTS, r->id, NULL, "agent.delete",
                         "agent", diff);
    cJSON_Delete(diff);

    if (rc != TX_OK) {
        cJSON_Delete(rec);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_publish_one(TXCP_PUB_AGENT, r->id);

    out = txcp_json_output(txcp_agent_fields, rec);
    cJSON_AddBoolToObject(out, "deleted", 1);
    cJSON_Delete(rec);

    txcp_http_reply(r, 200, out);
}


void
txcp_api_agents_import(txcp_req_t *r)
{
    int          rc, replace;
    char         err[512];
    size_t       len, line;
    const char  *s, *text;
    cJSON       *json, *out, *e, *resp;
    const cJSON *y;

    replace = 0;
    s = txcp_http_arg(r, "replace");

    if (s) {
        if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
            replace = 1;

        } else if (strcmp(s, "false") != 0 && strcmp(s, "0") != 0) {
            txcp_http_error(r, 400, "replace must be true or false");
            return;
        }
    }

    text = r->body ? r->body : "";
    len = r->body ? r->len : 0;
    json = NULL;

    /*
     * A JSON body {"yaml":"..."} carries the file; any other body is the
     * YAML itself (a JSON document is YAML too).
     */

    s = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_CONTENT_TYPE);

    if (s && strncasecmp(s, "application/json", 16) == 0) {
        json = txcp_json_parse_body(text, len, err, sizeof(err));
        y = cJSON_GetObjectItemCaseSensitive(json, "yaml");

        if (y) {
            if (!cJSON_IsString(y) || cJSON_GetArraySize(json) != 1) {
                cJSON_Delete(json);
                txcp_http_error(r, 400,
                                "a JSON body is {\"yaml\": \"<the file>\"}");
                return;
            }

            text = y->valuestring;
            len = strlen(text);
        }
    }

    rc = txcp_agents_import(text, len, replace, r->actor, &out, &line, err,
                            sizeof(err));
    cJSON_Delete(json);

    if (rc == TX_DECLINED) {
        resp = cJSON_CreateObject();
        e = cJSON_AddObjectToObject(resp, "error");
        cJSON_AddStringToObject(e, "type", "invalid_request_error");
        cJSON_AddStringToObject(e, "message", err);
        cJSON_AddNumberToObject(e, "line", (double) line);
        txcp_http_reply(r, 400, resp);
        return;
    }

    if (rc != TX_OK) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_http_reply(r, 200, out);
}


void
txcp_api_agents_export(txcp_req_t *r)
{
    int                  rc;
    char                *text;
    size_t               len;
    MDB_txn             *txn;
    struct MHD_Response *resp;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rc = txcp_agents_yaml(txn, &text, &len);
    mdb_txn_abort(txn);

    if (rc != TX_OK) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/yaml");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");

    txcp_http_reply_raw(r, 200, resp);
}


/* -- CLI ---------------------------------------------------------------- */


static int
txcp_agents_cli_usage(void)
{
    fprintf(stderr, "usage: torrix-cp agents import FILE [--replace] "
                    "[--data DIR] [--config FILE]\n"
                    "       torrix-cp agents export [--data DIR] "
                    "[--config FILE]\n");
    return 2;
}


int
txcp_agents_cli(int argc, char **argv)
{
    int         i, rc, replace, import;
    char       *text, err[512], *s;
    size_t      len, line;
    cJSON      *out;
    MDB_txn    *txn;
    const char *file;

    if (argc < 3) {
        return txcp_agents_cli_usage();
    }

    import = strcmp(argv[2], "import") == 0;

    if (!import && strcmp(argv[2], "export") != 0) {
        return txcp_agents_cli_usage();
    }

    if (import && (argc < 4 || argv[3][0] == '-')) {
        return txcp_agents_cli_usage();
    }

    file = import ? argv[3] : NULL;
    replace = 0;
    text = NULL;

    if (txcp_config_defaults(&txcp.conf) != 0) {
        return 2;
    }

    txcp.conf.log_level = TXCP_LOG_WARN;

    for (i = import ? 4 : 3; i < argc; i++) {
        if (import && strcmp(argv[i], "--replace") == 0) {
            replace = 1;
            continue;
        }

        if (txcp_config_cli_opt(&txcp.conf, argc, argv, &i, err, sizeof(err))
            != 0) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            txcp_config_free(&txcp.conf);
            return 2;
        }
    }

    if (import) {
        text =
            txcp_read_file(file, TXCP_AGENTS_FILE_MAX, &len, err, sizeof(err));

        if (text == NULL) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            txcp_config_free(&txcp.conf);
            return 1;
        }
    }

    rc = 2;

    if (sodium_init() < 0 || txcp_store_open(0) != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the store in %s\n",
                txcp.conf.data_dir);
        goto done;
    }

    if (!import) {
        if (txcp_store_begin(1, &txn) != 0) {
            goto done;
        }

        rc = txcp_agents_yaml(txn, &s, &len);
        mdb_txn_abort(txn);

        if (rc != TX_OK) {
            fprintf(stderr, "torrix-cp: export failed\n");
            rc = 2;
            goto done;
        }

        rc = fwrite(s, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 2;
        free(s);
        goto done;
    }

    /* the running daemon (if any) sees the agents through the snapshot */

    if (txcp_snapshot_open() != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the snapshot in %s\n",
                txcp.conf.data_dir);
        goto done;
    }

    out = NULL;

    switch (txcp_agents_import(text, len, replace, "cli", &out, &line, err,
                               sizeof(err)))
    {
    case TX_OK:
        cJSON_DeleteItemFromObjectCaseSensitive(out, "agents");
        s = cJSON_PrintUnformatted(out);
        printf("%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(out);
        rc = 0;

        if (txcp.resync_needed) {
            fprintf(stderr, "torrix-cp: agents stored, but the snapshot was "
                            "not updated: the daemon resyncs at its next "
                            "start\n");
            rc = 1;
        }

        break;

    case TX_DECLINED:
        fprintf(stderr, "torrix-cp: %s: %s\n", file, err);
        rc = 1;
        break;

    default:
        fprintf(stderr, "torrix-cp: import failed\n");
        rc = 2;
    }

done:

    free(text);
    txcp_snapshot_close();
    txcp_store_close();
    txcp_config_free(&txcp.conf);

    return rc;
}
