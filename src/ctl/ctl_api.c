/*
 * ctl_api.c - talk to the agent's admin API over HTTP (libcurl) and show
 * the JSON answers (jansson) as aligned tables for people, or as JSON for
 * scripts (--json).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>

#include "ctl/ctl_api.h"
#include "common/ban.h"

#define CTL_NAME       "sallyportctl"
#define API_BODY_MAX   (16u * 1024 * 1024)
#define TOKEN_MAX      1024
#define TABLE_COLS     9

struct api_opts {
    const char *url;
    const char *token_file;
    int json;
    /* ban only */
    const char *dur;
    const char *reason;
    int cut;
    int ban;
};

struct api_body {
    char *data;
    size_t len;
    int overflow;
};

/* ---- HTTP ------------------------------------------------------------ */

static size_t body_write(char *p, size_t size, size_t n, void *arg)
{
    struct api_body *b = arg;
    size_t len = size * n;
    char *nd;

    if (len > API_BODY_MAX - b->len) {
        b->overflow = 1;
        return 0;                    /* makes curl fail the transfer */
    }
    if ((nd = realloc(b->data, b->len + len + 1)) == NULL)
        return 0;
    memcpy(nd + b->len, p, len);
    b->data = nd;
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

/* Read the token: the first line of the file, trailing blanks dropped. */
static int read_token(const char *path, char *tok, size_t toklen)
{
    FILE *f = fopen(path, "r");
    size_t n;
    int rc = -1;

    if (f == NULL) {
        fprintf(stderr, CTL_NAME ": token file %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    if (fgets(tok, (int)toklen, f) == NULL) {
        fprintf(stderr, CTL_NAME ": token file %s is empty\n", path);
        goto out;
    }
    n = strlen(tok);
    while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' ||
                     tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        tok[--n] = '\0';
    if (n == 0) {
        fprintf(stderr, CTL_NAME ": token file %s is empty\n", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

/*
 * Send METHOD to base URL + path. On a 2xx answer returns 0 with the
 * parsed JSON in *out (NULL for a non-JSON body). Otherwise prints why
 * and returns 1.
 */
static int api_call(const struct api_opts *o, const char *method,
                    const char *path, json_t **out)
{
    char tok[TOKEN_MAX + 2], url[2048], auth[TOKEN_MAX + 32];
    struct api_body body = { NULL, 0, 0 };
    struct curl_slist *hdrs = NULL;
    json_error_t jerr;
    json_t *j = NULL, *e;
    long code = 0;
    CURL *c = NULL;
    CURLcode cr;
    int rc = 1, n;

    *out = NULL;
    if (read_token(o->token_file, tok, sizeof tok) != 0)
        return 1;
    n = snprintf(url, sizeof url, "%s%s", o->url, path);
    if (n < 0 || (size_t)n >= sizeof url) {
        fprintf(stderr, CTL_NAME ": --url too long\n");
        goto out;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    if ((c = curl_easy_init()) == NULL ||
        (hdrs = curl_slist_append(NULL, auth)) == NULL) {
        fprintf(stderr, CTL_NAME ": out of memory\n");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if ((cr = curl_easy_perform(c)) != CURLE_OK) {
        fprintf(stderr, CTL_NAME ": %s %s: %s\n", method, url,
                body.overflow ? "answer too large" : curl_easy_strerror(cr));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (body.data != NULL)
        j = json_loadb(body.data, body.len, 0, &jerr);
    if (code < 200 || code > 299) {
        e = j != NULL ? json_object_get(j, "error") : NULL;
        fprintf(stderr, CTL_NAME ": %s %s: HTTP %ld: %s\n", method, path,
                code, json_is_string(e) ? json_string_value(e) : "no reason");
        json_decref(j);
        goto out;
    }
    if (j == NULL) {
        fprintf(stderr, CTL_NAME ": %s %s: answer is not JSON: %s\n", method,
                path, jerr.text);
        goto out;
    }
    *out = j;
    rc = 0;
out:
    memset(tok, 0, sizeof tok);
    memset(auth, 0, sizeof auth);
    curl_slist_free_all(hdrs);
    if (c != NULL)
        curl_easy_cleanup(c);
    free(body.data);
    return rc;
}

/* ---- options --------------------------------------------------------- */

/* Parse --url, --token-file, --json; returns the index of the first
 * operand, or -1 after printing a usage message. */
static int parse_opts(int argc, char **argv, struct api_opts *o)
{
    static const struct option opts[] = {
        { "url", required_argument, NULL, 'u' },
        { "token-file", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "for", required_argument, NULL, 'f' },
        { "reason", required_argument, NULL, 'r' },
        { "cut", no_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    int c, ban = o->ban;

    memset(o, 0, sizeof *o);
    o->ban = ban;
    o->url = getenv("SALLYPORT_URL") ? getenv("SALLYPORT_URL") : CTL_API_URL;
    o->token_file = getenv("SALLYPORT_TOKEN_FILE") ?
        getenv("SALLYPORT_TOKEN_FILE") : CTL_API_TOKEN_FILE;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 't':
            o->token_file = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'f':
        case 'r':
        case 'c':
            if (!o->ban) {
                fprintf(stderr, CTL_NAME ": %s: invalid option '%s'\n",
                        argv[0], argv[optind - 1]);
                return -1;
            }
            if (c == 'f')
                o->dur = optarg;
            else if (c == 'r')
                o->reason = optarg;
            else
                o->cut = 1;
            break;
        default:
            fprintf(stderr, CTL_NAME ": %s: invalid option '%s'\n", argv[0],
                    argv[optind - 1]);
            return -1;
        }
    }
    return optind;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));

    if (s != NULL) {
        puts(s);
        free(s);
    }
}

/* ---- tables ------------------------------------------------------------ */

struct table {
    size_t ncols;
    size_t nrows;
    char **cells;           /* nrows * ncols, malloc'd strings */
    size_t width[TABLE_COLS];
};

static void table_add(struct table *t, const char *const *row)
{
    char **nc;
    size_t i, w;

    nc = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*nc));
    if (nc == NULL)
        return;
    t->cells = nc;
    for (i = 0; i < t->ncols; i++) {
        nc[t->nrows * t->ncols + i] = strdup(row[i] ? row[i] : "-");
        w = strlen(row[i] ? row[i] : "-");
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->nrows++;
}

static void table_print(struct table *t)
{
    size_t r, i;
    const char *s;

    for (r = 0; r < t->nrows; r++) {
        for (i = 0; i < t->ncols; i++) {
            s = t->cells[r * t->ncols + i];
            s = s ? s : "?";
            if (i + 1 == t->ncols)
                printf("%s\n", s);
            else
                printf("%-*s  ", (int)t->width[i], s);
        }
    }
    for (r = 0; r < t->nrows * t->ncols; r++)
        free(t->cells[r]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *jnum(json_t *o, const char *key, char *buf, size_t len,
                        const char *suffix)
{
    json_t *v = json_object_get(o, key);

    if (json_is_integer(v))
        snprintf(buf, len, "%lld%s", (long long)json_integer_value(v), suffix);
    else if (json_is_real(v))
        snprintf(buf, len, "%.1f%s", json_real_value(v), suffix);
    else
        return NULL;
    return buf;
}

/* "N process(es), M sessions" for a "draining" object, or NULL. */
static const char *draining(json_t *o, char *buf, size_t len)
{
    json_t *p = json_object_get(o, "processes");
    json_t *s = json_object_get(o, "sessions");

    if (!json_is_integer(p) || json_integer_value(p) <= 0)
        return NULL;
    snprintf(buf, len, "%lld process%s, %lld sessions",
             (long long)json_integer_value(p),
             json_integer_value(p) == 1 ? "" : "es",
             json_is_integer(s) ? (long long)json_integer_value(s) : 0LL);
    return buf;
}

/* ---- commands ---------------------------------------------------------- */

int ctl_api_status(int argc, char **argv)
{
    struct api_opts o = { 0 };
    struct table t;
    json_t *j, *a, *v, *b, *bv;
    char n1[32], n2[32], n3[32], dr[64], backends[1024];
    size_t i, k, used;
    int first = parse_opts(argc, argv, &o);

    if (first < 0 || first != argc)
        return 2;
    if (api_call(&o, "GET", "/api/v1/status", &j) != 0)
        return 1;
    if (o.json) {
        print_json(j);
        json_decref(j);
        return 0;
    }
    printf("agent %s  version %s  pid %s  up %s\n  config %s\n\n",
           jstr(j, "agent") ? jstr(j, "agent") : "?",
           jstr(j, "version") ? jstr(j, "version") : "?",
           jnum(j, "pid", n1, sizeof n1, "") ? n1 : "?",
           jnum(j, "uptime_seconds", n2, sizeof n2, "s") ? n2 : "?",
           jstr(j, "config") ? jstr(j, "config") : "?");

    if (draining(json_object_get(j, "draining"), dr, sizeof dr) != NULL)
        printf("  draining: older agent %s\n\n", dr);
    memset(&t, 0, sizeof t);
    t.ncols = 7;
    {
        const char *hdr[] = { "EDGE", "NAME", "STATE", "RTT", "RECONNECTS",
                              "DRAINING", "LAST ERROR" };
        table_add(&t, hdr);
    }
    a = json_object_get(j, "edges");
    json_array_foreach(a, i, v) {
        const char *row[7], *name = jstr(v, "name");
        row[0] = jstr(v, "edge");
        row[1] = name != NULL && name[0] != '\0' ? name : NULL;
        row[2] = jstr(v, "state");
        row[3] = jnum(v, "rtt_ms", n1, sizeof n1, "ms");
        row[4] = jnum(v, "reconnects", n2, sizeof n2, "");
        row[5] = draining(json_object_get(v, "draining"), dr, sizeof dr);
        row[6] = jstr(v, "last_error");
        table_add(&t, row);
    }
    table_print(&t);
    printf("\n");

    memset(&t, 0, sizeof t);
    t.ncols = 4;
    {
        const char *hdr[] = { "SERVICE", "LISTEN", "SESSIONS", "BACKENDS" };
        table_add(&t, hdr);
    }
    a = json_object_get(j, "services");
    json_array_foreach(a, i, v) {
        const char *row[4];
        backends[0] = '\0';
        used = 0;
        b = json_object_get(v, "backends");
        json_array_foreach(b, k, bv) {
            int w = snprintf(backends + used, sizeof backends - used,
                             "%s%s (%s)", k ? ", " : "",
                             jstr(bv, "address") ? jstr(bv, "address") : "?",
                             jstr(bv, "health") ? jstr(bv, "health") : "?");
            if (w < 0 || (size_t)w >= sizeof backends - used)
                break;
            used += (size_t)w;
        }
        row[0] = jstr(v, "name");
        row[1] = jstr(v, "listen");
        row[2] = jnum(v, "sessions", n3, sizeof n3, "");
        row[3] = jstr(v, "refused") ? jstr(v, "refused") : backends;
        table_add(&t, row);
    }
    table_print(&t);
    json_decref(j);
    return 0;
}

int ctl_api_sessions(int argc, char **argv)
{
    struct api_opts o = { 0 };
    struct table t;
    json_t *j, *a, *v;
    char id[32], tb[32], tc[32], age[32];
    size_t i;
    int first = parse_opts(argc, argv, &o);
    const char *hdr[] = { "ID", "SERVICE", "CLIENT", "BACKEND", "EDGE",
                          "STATE", "TO BACKEND", "TO CLIENT", "AGE" };

    if (first < 0 || first != argc)
        return 2;
    if (api_call(&o, "GET", "/api/v1/sessions", &j) != 0)
        return 1;
    if (o.json) {
        print_json(j);
        json_decref(j);
        return 0;
    }
    memset(&t, 0, sizeof t);
    t.ncols = 9;
    table_add(&t, hdr);
    a = json_object_get(j, "sessions");
    json_array_foreach(a, i, v) {
        const char *row[9];
        row[0] = jnum(v, "id", id, sizeof id, "");
        row[1] = jstr(v, "service");
        row[2] = jstr(v, "client");
        row[3] = jstr(v, "backend");
        row[4] = jstr(v, "edge");
        row[5] = jstr(v, "state");
        row[6] = jnum(v, "bytes_to_backend", tb, sizeof tb, "");
        row[7] = jnum(v, "bytes_to_client", tc, sizeof tc, "");
        row[8] = jnum(v, "age_seconds", age, sizeof age, "s");
        table_add(&t, row);
    }
    table_print(&t);
    json_decref(j);
    return 0;
}

int ctl_api_kill(int argc, char **argv)
{
    struct api_opts o = { 0 };
    char path[64];
    json_t *j;
    const char *id;
    int first = parse_opts(argc, argv, &o);

    if (first < 0 || argc - first != 1) {
        fprintf(stderr, CTL_NAME ": kill: expected one session ID\n");
        return 2;
    }
    id = argv[first];
    if (id[0] == '\0' || strspn(id, "0123456789") != strlen(id) ||
        strlen(id) > 20) {
        fprintf(stderr, CTL_NAME ": kill: '%s' is not a session id\n", id);
        return 2;
    }
    snprintf(path, sizeof path, "/api/v1/sessions/%s", id);
    if (api_call(&o, "DELETE", path, &j) != 0)
        return 1;
    if (o.json)
        print_json(j);
    else
        printf("session %s killed\n", id);
    json_decref(j);
    return 0;
}

static void print_list(json_t *j, const char *key, const char *label)
{
    json_t *a = json_object_get(j, key), *v;
    size_t i;

    if (json_array_size(a) == 0)
        return;
    printf("  %-18s", label);
    json_array_foreach(a, i, v)
        printf(" %s", json_is_string(v) ? json_string_value(v) : "?");
    printf("\n");
}

int ctl_api_reload(int argc, char **argv)
{
    struct api_opts o = { 0 };
    json_t *j;
    int first = parse_opts(argc, argv, &o);

    if (first < 0 || first != argc)
        return 2;
    if (api_call(&o, "POST", "/api/v1/reload", &j) != 0)
        return 1;
    if (o.json) {
        print_json(j);
    } else {
        printf("configuration reloaded\n");
        print_list(j, "added", "added:");
        print_list(j, "removed", "removed:");
        print_list(j, "listen_changed", "listen changed:");
        print_list(j, "backends_changed", "backends changed:");
        print_list(j, "restart_needed", "restart needed:");
    }
    json_decref(j);
    return 0;
}

/* ---- bans ------------------------------------------------------------ */

/* "/api/v1/bans?addr=A[&for=D][&reason=R][&cut=1]" into path, escaped. */
static int ban_path(const struct api_opts *o, const char *addr, char *path,
                    size_t len)
{
    char *ea = curl_easy_escape(NULL, addr, 0);
    char *er = o->reason ? curl_easy_escape(NULL, o->reason, 0) : NULL;
    int n = -1;

    if (ea != NULL && (o->reason == NULL || er != NULL))
        n = snprintf(path, len, "/api/v1/bans?addr=%s%s%s%s%s%s", ea,
                     o->dur ? "&for=" : "", o->dur ? o->dur : "",
                     er ? "&reason=" : "", er ? er : "",
                     o->cut ? "&cut=1" : "");
    curl_free(ea);
    curl_free(er);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* ban ADDR|CIDR [--for DURATION] [--reason TEXT] [--cut], and unban
 * ADDR|CIDR: the arguments are checked here first, with the agent's own
 * parsers, so a typo is a usage error rather than a round trip. */
static int ban_cmd(int argc, char **argv, int lift)
{
    struct api_opts o = { 0 };
    char path[1024];
    const char *why;
    struct cidr c;
    uint32_t secs;
    json_t *j;
    int first;

    o.ban = !lift;
    if ((first = parse_opts(argc, argv, &o)) < 0)
        return 2;
    if (argc - first != 1) {
        fprintf(stderr, CTL_NAME ": %s: expected one ADDR or CIDR\n", argv[0]);
        return 2;
    }
    if (ban_range_parse(argv[first], &c, &why) == -1) {
        fprintf(stderr, CTL_NAME ": %s: '%s': %s\n", argv[0], argv[first], why);
        return 2;
    }
    if (o.dur != NULL && ban_duration_parse(o.dur, &secs, &why) == -1) {
        fprintf(stderr, CTL_NAME ": ban: --for '%s': %s\n", o.dur, why);
        return 2;
    }
    if (o.reason != NULL && !ban_reason_valid(o.reason)) {
        fprintf(stderr, CTL_NAME ": ban: --reason: at most 200 bytes of "
                "printable ASCII\n");
        return 2;
    }
    if (ban_path(&o, argv[first], path, sizeof path) == -1) {
        fprintf(stderr, CTL_NAME ": %s: arguments too long\n", argv[0]);
        return 2;
    }
    if (api_call(&o, lift ? "DELETE" : "POST", path, &j) != 0)
        return 1;
    if (o.json)
        print_json(j);
    else if (lift)
        printf("ban of %s lifted\n", jstr(j, "lifted"));
    else if (o.dur != NULL)
        printf("%s banned for %s\n", jstr(j, "banned"), o.dur);
    else
        printf("%s banned until lifted\n", jstr(j, "banned"));
    json_decref(j);
    return 0;
}

int ctl_api_ban(int argc, char **argv)
{
    return ban_cmd(argc, argv, 0);
}

int ctl_api_unban(int argc, char **argv)
{
    return ban_cmd(argc, argv, 1);
}

int ctl_api_bans(int argc, char **argv)
{
    struct api_opts o = { 0 };
    struct table t;
    json_t *j, *a, *v;
    char left[32];
    size_t i;
    int first = parse_opts(argc, argv, &o);
    const char *hdr[] = { "ADDR", "LEFT", "REASON" };

    if (first < 0 || first != argc)
        return 2;
    if (api_call(&o, "GET", "/api/v1/bans", &j) != 0)
        return 1;
    if (o.json) {
        print_json(j);
        json_decref(j);
        return 0;
    }
    memset(&t, 0, sizeof t);
    t.ncols = 3;
    table_add(&t, hdr);
    a = json_object_get(j, "bans");
    json_array_foreach(a, i, v) {
        const char *row[3];
        row[0] = jstr(v, "addr");
        row[1] = json_is_null(json_object_get(v, "left")) ? "until lifted" :
                 jnum(v, "left", left, sizeof left, "s");
        row[2] = jstr(v, "reason");
        table_add(&t, row);
    }
    table_print(&t);
    json_decref(j);
    return 0;
}

int ctl_api_upgrade(int argc, char **argv)
{
    struct api_opts o = { 0 };
    char n[32];
    json_t *j;
    int first = parse_opts(argc, argv, &o);

    if (first < 0 || first != argc)
        return 2;
    if (api_call(&o, "POST", "/api/v1/upgrade", &j) != 0)
        return 1;
    if (o.json)
        print_json(j);
    else
        printf("new agent process %s started: it takes over at %s, and the "
               "old one\nfinishes its sessions, then exits (see the agent's "
               "log, and status)\n", jnum(j, "started", n, sizeof n, "") ?
               n : "?", jstr(j, "handover_socket") ?
               jstr(j, "handover_socket") : "?");
    json_decref(j);
    return 0;
}
