/* mosquitto_tessera.c: a Mosquitto 2.x plugin that lets devices in only with a live Tessera
 * registration token (username = device id, password = RT), confines each device to its own
 * topics, and disconnects a session when its RT expires or its registration stops being live.
 *
 * Options (mosquitto.conf, after `plugin .../mosquitto_tessera.so`); docs/mqtt.md has the whole
 * story. One of two modes:
 *   plugin_opt_data_dir DIR     local mode: the Tessera server's data directory on this host
 *   plugin_opt_server ADDR      remote mode: the server's admin endpoint (host:port), with
 *   plugin_opt_token_file FILE    a file holding a service token (tessera token create
 *                                 --role service), and one of
 *   plugin_opt_ca_file FILE       the CA that signed the server's certificate (PEM) or
 *   plugin_opt_pin HEX            the SHA-256 of a certificate in the server's chain;
 *   plugin_opt_server_name NAME   the name the certificate carries (default: ADDR's host)
 *   plugin_opt_cache_entries N    RTs the cache holds (default 100000)
 *   plugin_opt_cache_secs N       how long an answer is kept at most (default 60)
 *   plugin_opt_source_rate N      unknown RTs one client address may have the server asked
 *                                 about: N a second, 2N at once (default 10)
 *   plugin_opt_report_secs N      how often what the server was asked is logged (default 60)
 * and in both:
 *   plugin_opt_topics PATTERNS  space-separated topic patterns a device may use; %u is its
 *                               device id (default "devices/%u/#")
 *   plugin_opt_recheck_ms N     how often revocations and expiries are looked for (default 250)
 *
 * A client must connect with its device id as its MQTT client id (and as its username), or
 * with its device id, a slash and anything (`pump-17/sub`) for a device that keeps several
 * sessions: a client id names one session, and a CONNECT with one in use takes that session
 * over, so a device may only take over its own (no device id contains a slash).
 *
 * Nothing waits on the network on the broker's thread. In local mode a CONNECT is checked
 * against the data directory (a few microseconds). In remote mode it is answered from the
 * service validator's cache, whose thread asks the server about RTs it has not seen: the first
 * CONNECT with a new RT is refused while the server is asked, and the device's next attempt is
 * answered. Live sessions are not checked one by one but through the server's revocations,
 * which both modes follow, and their RTs' expiry. RTs are kept only while their session lives,
 * and wiped then. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define TESSERA_PLATFORM 1
#include "tessera.h"


/* One authenticated MQTT session. */
struct session {
    const struct mosquitto *client; /* identity only; never dereferenced after DISCONNECT */
    char *client_id;
    char *device_id;
    uint8_t rt[TESSERA_RT_MAX_LEN]; /* local mode: the RT, to check again at its expiry */
    size_t rt_len;
    uint64_t registration_id;
    uint64_t expires_at; /* Unix seconds */
    struct session *next;
};

struct plugin {
    mosquitto_plugin_id_t *id;
    tessera_local_validator *local;    /* local mode */
    tessera_service_validator *remote; /* remote mode */
    tessera_result remote_status;      /* the service validator's status last logged */
    tessera_service_validator_stats reported; /* its figures when last logged */
    struct timespec next_report;
    long report_secs;
    char **patterns;
    size_t pattern_count;
    long recheck_ns;
    struct timespec next_recheck;
    uint64_t cursor;       /* revocations seen up to here */
    bool feed_failing;     /* the last read of revocations failed (logged once) */
    struct session *sessions;
};

/* Overwrite a secret so the compiler cannot drop the store. */
static void wipe(void *p, size_t n) {
    volatile uint8_t *b = p;
    while (n--) {
        *b++ = 0;
    }
}

static void session_free(struct session *s) {
    wipe(s->rt, sizeof s->rt);
    mosquitto_free(s->client_id);
    mosquitto_free(s->device_id);
    mosquitto_free(s);
}

/* Why a check failed, for the broker log. Never includes the token. */
static const char *reason(tessera_result r) {
    switch (r) {
    case TESSERA_UNAUTHENTICATED:
        return "not a token this server issued";
    case TESSERA_EXPIRED:
        return "expired";
    case TESSERA_REVOKED:
        return "revoked";
    case TESSERA_SUPERSEDED:
        return "superseded by a newer generation";
    case TESSERA_TOKEN_WRONG_PREFIX:
    case TESSERA_TOKEN_WRONG_LENGTH:
    case TESSERA_TOKEN_BAD_ENCODING:
    case TESSERA_TOKEN_BAD_CHECKSUM:
    case TESSERA_TOKEN_UNKNOWN_VERSION:
        return "malformed token";
    case TESSERA_STORE:
        return "the data directory could not be read";
    case TESSERA_PENDING:
        return "not verified yet: asking the Tessera server, the device's next attempt is "
               "answered";
    case TESSERA_RATE_LIMITED:
        return "too many unknown tokens from this address; not asking the Tessera server";
    default:
        return tessera_result_message(r);
    }
}

static const char *client_label(const struct mosquitto *client) {
    const char *id = mosquitto_client_id(client);
    return id ? id : "?";
}

/* Take out of the list the sessions `pred` picks, and wipe them. With `why`, each is also
 * disconnected, with `why` in the log; without, only forgotten (its connection is gone or taken
 * over). */
static void drop_where(struct plugin *p,
                       bool (*pred)(struct plugin *, const struct session *, const void *),
                       const void *arg, const char *why) {
    struct session **s = &p->sessions;
    while (*s) {
        if (!pred(p, *s, arg)) {
            s = &(*s)->next;
            continue;
        }
        struct session *out = *s;
        *s = out->next;
        if (why) {
            mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: disconnecting %s (%s): %s",
                                 out->client_id, out->device_id, why);
            mosquitto_kick_client_by_clientid(out->client_id, false);
        }
        session_free(out);
    }
}

/* A session of this connection. */
static bool of_client(struct plugin *p, const struct session *s, const void *client) {
    (void)p;
    return s->client == client;
}

/* A session the new session `arg` replaces: the same connection, or its client id (a CONNECT
 * with a client id in use takes the old connection over). */
static bool replaced_by(struct plugin *p, const struct session *s, const void *arg) {
    const struct session *fresh = arg;
    (void)p;
    return s->client == fresh->client || strcmp(s->client_id, fresh->client_id) == 0;
}

/* Check an RT of a client at `address` in the plugin's mode; never waits on the network. */
static tessera_result check(struct plugin *p, const uint8_t *rt, size_t len, const char *address,
                            tessera_rt_identity *identity) {
    return p->local ? tessera_local_validator_check(p->local, rt, len, identity)
                    : tessera_service_validator_check_from(p->remote, rt, len, address, identity);
}

/* Whether `client_id` is one device `device_id` may use: its id, or its id, '/' and more. */
static bool own_client_id(const char *client_id, const char *device_id) {
    size_t n = strlen(device_id);
    return strncmp(client_id, device_id, n) == 0 && (client_id[n] == '\0' || client_id[n] == '/');
}

/* MOSQ_EVT_BASIC_AUTH: username = device id, password = an RT that validates now, client id =
 * device id (or device id/suffix). */
static int on_basic_auth(int event, void *event_data, void *userdata) {
    struct mosquitto_evt_basic_auth *ed = event_data;
    struct plugin *p = userdata;
    (void)event;
    const char *who = client_label(ed->client);
    if (!ed->username || !ed->password || ed->password[0] == '\0') {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: refused %s from %s: no username or password",
                             who, mosquitto_client_address(ed->client));
        return MOSQ_ERR_AUTH;
    }
    size_t len = strlen(ed->password);
    if (len > TESSERA_RT_MAX_LEN) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: refused %s (%s): malformed token", who,
                             ed->username);
        return MOSQ_ERR_AUTH;
    }
    if (p->remote) {
        tessera_result st = tessera_service_validator_status(p->remote);
        if (st != TESSERA_OK && st != TESSERA_PENDING) {
            mosquitto_log_printf(MOSQ_LOG_NOTICE,
                                 "tessera: refused %s (%s): the Tessera server cannot be followed "
                                 "(%s); new connections are refused until it can",
                                 who, ed->username, tessera_result_message(st));
            return MOSQ_ERR_AUTH;
        }
    }
    tessera_rt_identity identity;
    tessera_result r = check(p, (const uint8_t *)ed->password, len,
                             mosquitto_client_address(ed->client), &identity);
    if (r != TESSERA_OK) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: refused %s (%s): %s", who, ed->username,
                             reason(r));
        return MOSQ_ERR_AUTH;
    }
    if (strcmp(identity.device_id, ed->username) != 0) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "tessera: refused %s (%s): the token belongs to device %s", who,
                             ed->username, identity.device_id);
        return MOSQ_ERR_AUTH;
    }
    /* A CONNECT with a client id in use takes that session over: only the device itself may. */
    const char *client_id = mosquitto_client_id(ed->client);
    if (!client_id || !own_client_id(client_id, identity.device_id)) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "tessera: refused %s (%s): the client id must be the device id "
                             "(or the device id, a slash and a suffix)",
                             who, ed->username);
        return MOSQ_ERR_AUTH;
    }
    struct session *s = mosquitto_calloc(1, sizeof *s);
    if (!s || !(s->client_id = mosquitto_strdup(client_id ? client_id : "")) ||
        !(s->device_id = mosquitto_strdup(identity.device_id))) {
        if (s) {
            session_free(s);
        }
        return MOSQ_ERR_NOMEM;
    }
    s->client = ed->client;
    /* Track only the new connection, so an old RT's expiry never ends the session that
     * replaced it. */
    drop_where(p, replaced_by, s, NULL);
    if (p->local) { /* checked again at its expiry */
        memcpy(s->rt, ed->password, len);
        s->rt_len = len;
    }
    s->registration_id = identity.registration_id;
    s->expires_at = identity.expires_at;
    s->next = p->sessions;
    p->sessions = s;
    mosquitto_log_printf(MOSQ_LOG_INFO,
                         "tessera: accepted %s as device %s (registration %llu, generation %u)",
                         who, identity.device_id, (unsigned long long)identity.registration_id,
                         identity.generation);
    return MOSQ_ERR_SUCCESS;
}

/* Whether every topic the filter `sub` can match is matched by `pattern` (both may use + and
 * #; for a topic without wildcards this is ordinary MQTT matching). */
static bool filter_within(const char *pattern, const char *sub) {
    for (;;) {
        const char *pe = strchr(pattern, '/');
        const char *se = strchr(sub, '/');
        size_t pl = pe ? (size_t)(pe - pattern) : strlen(pattern);
        size_t sl = se ? (size_t)(se - sub) : strlen(sub);
        if (pl == 1 && pattern[0] == '#') {
            return true;
        }
        if (sl == 1 && sub[0] == '#') {
            return false; /* the filter reaches levels the pattern does not allow */
        }
        if (pl == 1 && pattern[0] == '+') {
            /* any one level, a + in the filter included */
        } else if (pl != sl || memcmp(pattern, sub, pl) != 0 || (sl == 1 && sub[0] == '+')) {
            return false;
        }
        if (!pe && !se) {
            return true;
        }
        if (!se) {
            /* "a/b" is within "a/b/#": # also matches its parent level */
            return strcmp(pe + 1, "#") == 0;
        }
        if (!pe) {
            return false;
        }
        pattern = pe + 1;
        sub = se + 1;
    }
}

/* `pattern` with every %u replaced by `device_id`, or NULL without memory. */
static char *expand(const char *pattern, const char *device_id) {
    size_t n = 1, dl = strlen(device_id);
    for (const char *c = pattern; *c; c++) {
        n += (c[0] == '%' && c[1] == 'u') ? (c++, dl) : 1;
    }
    char *out = mosquitto_malloc(n), *o = out;
    if (!out) {
        return NULL;
    }
    for (const char *c = pattern; *c; c++) {
        if (c[0] == '%' && c[1] == 'u') {
            memcpy(o, device_id, dl);
            o += dl;
            c++;
        } else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

/* MOSQ_EVT_ACL_CHECK: a device uses only topics within its patterns. */
static int on_acl_check(int event, void *event_data, void *userdata) {
    struct mosquitto_evt_acl_check *ed = event_data;
    struct plugin *p = userdata;
    (void)event;
    const char *device_id = mosquitto_client_username(ed->client);
    if (!device_id) {
        return MOSQ_ERR_ACL_DENIED;
    }
    for (size_t i = 0; i < p->pattern_count; i++) {
        char *allowed = expand(p->patterns[i], device_id);
        if (!allowed) {
            return MOSQ_ERR_NOMEM;
        }
        bool ok = filter_within(allowed, ed->topic);
        mosquitto_free(allowed);
        if (ok) {
            return MOSQ_ERR_SUCCESS;
        }
    }
    if (ed->access != MOSQ_ACL_READ) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: denied %s (%s) %s on %s",
                             client_label(ed->client), device_id,
                             ed->access == MOSQ_ACL_WRITE ? "publish" : "subscribe", ed->topic);
    }
    return MOSQ_ERR_ACL_DENIED;
}

/* MOSQ_EVT_DISCONNECT: forget the session and wipe its RT. */
static int on_disconnect(int event, void *event_data, void *userdata) {
    struct mosquitto_evt_disconnect *ed = event_data;
    struct plugin *p = userdata;
    (void)event;
    drop_where(p, of_client, ed->client, NULL);
    return MOSQ_ERR_SUCCESS;
}

static bool due(const struct timespec *now, const struct timespec *at) {
    return now->tv_sec > at->tv_sec || (now->tv_sec == at->tv_sec && now->tv_nsec >= at->tv_nsec);
}

static bool of_registration(struct plugin *p, const struct session *s, const void *arg) {
    (void)p;
    return s->registration_id == *(const uint64_t *)arg;
}

/* A session whose RT has reached its expiry is ended. In local mode it is first checked as a
 * CONNECT would be (the validator allows the server's clock-skew leeway). */
static bool expired(struct plugin *p, const struct session *s, const void *arg) {
    (void)arg;
    if ((uint64_t)time(NULL) < s->expires_at) {
        return false;
    }
    if (p->remote) {
        return true;
    }
    tessera_rt_identity identity;
    tessera_result r = tessera_local_validator_check(p->local, s->rt, s->rt_len, &identity);
    return r == TESSERA_EXPIRED;
}

/* Remote mode: log when the service validator starts or stops following the server. */
static void log_remote_status(struct plugin *p) {
    tessera_result st = tessera_service_validator_status(p->remote);
    if (st == p->remote_status) {
        return;
    }
    if (st == TESSERA_OK) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "tessera: following the Tessera server");
    } else if (st != TESSERA_PENDING) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "tessera: cannot follow the Tessera server (%s): new connections are "
                             "refused, live sessions stay until their RT expires; retrying",
                             tessera_result_message(st));
    }
    p->remote_status = st;
}

/* Remote mode, every report_secs when anything changed: how many RTs the server was asked about
 * (each charged to the service token's rate limit), how many its limit refused, and how many
 * unknown RTs were refused without asking because their address sent too many. */
static void report_quota(struct plugin *p, const struct timespec *now) {
    if (!due(now, &p->next_report)) {
        return;
    }
    p->next_report.tv_sec = now->tv_sec + p->report_secs;
    p->next_report.tv_nsec = now->tv_nsec;
    tessera_service_validator_stats st;
    if (tessera_service_validator_get_stats(p->remote, &st) != TESSERA_OK) {
        return;
    }
    const tessera_service_validator_stats *was = &p->reported;
    if (st.asked == was->asked && st.throttled == was->throttled) {
        return;
    }
    mosquitto_log_printf(
        st.over_quota > was->over_quota ? MOSQ_LOG_WARNING : MOSQ_LOG_INFO,
        "tessera: in the last %ld s asked the Tessera server about %llu RTs (%llu valid, %llu "
        "refused, %llu over the service token's rate limit, %llu failed); refused %llu unknown "
        "RTs from addresses that sent too many; holding %llu valid and %llu refused answers",
        p->report_secs, (unsigned long long)(st.asked - was->asked),
        (unsigned long long)(st.answered_valid - was->answered_valid),
        (unsigned long long)(st.answered_refused - was->answered_refused),
        (unsigned long long)(st.over_quota - was->over_quota),
        (unsigned long long)(st.failed - was->failed),
        (unsigned long long)(st.throttled - was->throttled), (unsigned long long)st.cached_valid,
        (unsigned long long)st.cached_refused);
    p->reported = st;
}

/* Follow the server's revocations and end the sessions they name. */
static void follow_revocations(struct plugin *p) {
    enum { BATCH = 256 };
    uint64_t ids[BATCH];
    size_t n = BATCH;
    while (n == BATCH) {
        tessera_result r =
            p->local ? tessera_local_validator_revocations(p->local, &p->cursor, ids, BATCH, &n)
                     : tessera_service_validator_revocations(p->remote, ids, BATCH, &n);
        if (r != TESSERA_OK) {
            if (!p->feed_failing) {
                mosquitto_log_printf(MOSQ_LOG_ERR,
                                     "tessera: cannot read revocations (%s); retrying",
                                     tessera_result_message(r));
            }
            p->feed_failing = true;
            return;
        }
        p->feed_failing = false;
        for (size_t i = 0; i < n; i++) {
            drop_where(p, of_registration, &ids[i], "revoked");
        }
    }
}

/* MOSQ_EVT_TICK: every recheck interval, end the sessions whose registration has been revoked
 * (directly, by blocking the device id, by revoking its PT) and those whose RT has expired. A
 * session whose device has since refreshed stays: its registration is live. */
static int on_tick(int event, void *event_data, void *userdata) {
    struct plugin *p = userdata;
    (void)event;
    (void)event_data;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!due(&now, &p->next_recheck)) {
        return MOSQ_ERR_SUCCESS;
    }
    long ns = now.tv_nsec + p->recheck_ns;
    p->next_recheck.tv_sec = now.tv_sec + ns / 1000000000L;
    p->next_recheck.tv_nsec = ns % 1000000000L;
    if (p->remote) {
        log_remote_status(p);
        report_quota(p, &now);
    }
    follow_revocations(p);
    drop_where(p, expired, NULL, "expired");
    return MOSQ_ERR_SUCCESS;
}

static int fail(const char *why) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: %s", why);
    return MOSQ_ERR_INVAL;
}

static void plugin_free(struct plugin *p) {
    if (!p) {
        return;
    }
    while (p->sessions) {
        struct session *s = p->sessions;
        p->sessions = s->next;
        session_free(s);
    }
    for (size_t i = 0; i < p->pattern_count; i++) {
        mosquitto_free(p->patterns[i]);
    }
    mosquitto_free(p->patterns);
    tessera_local_validator_free(p->local);
    tessera_service_validator_free(p->remote);
    mosquitto_free(p);
}

/* Split the space-separated patterns into p->patterns. */
static int parse_topics(struct plugin *p, const char *topics) {
    char *copy = mosquitto_strdup(topics), *save = NULL;
    if (!copy) {
        return MOSQ_ERR_NOMEM;
    }
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        char **grown = mosquitto_realloc(p->patterns, (p->pattern_count + 1) * sizeof *grown);
        if (!grown || !(grown[p->pattern_count] = mosquitto_strdup(t))) {
            if (grown) {
                p->patterns = grown;
            }
            mosquitto_free(copy);
            return MOSQ_ERR_NOMEM;
        }
        p->patterns = grown;
        p->pattern_count++;
    }
    mosquitto_free(copy);
    return p->pattern_count ? MOSQ_ERR_SUCCESS : fail("plugin_opt_topics names no pattern");
}

/* Plugin interface version 5, the one Mosquitto 2.0 introduced. */
int mosquitto_plugin_version(int supported_version_count, const int *supported_versions) {
    for (int i = 0; i < supported_version_count; i++) {
        if (supported_versions[i] == 5) {
            return 5;
        }
    }
    return -1;
}

/* The whole of a small file (a CA, a token), NUL-terminated, or NULL. */
static char *read_small_file(const char *path, size_t *len) {
    enum { MAX = 256 * 1024 };
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    char *buf = mosquitto_malloc(MAX + 1);
    *len = buf ? fread(buf, 1, MAX + 1, f) : 0;
    bool whole = buf && *len <= MAX && !ferror(f);
    fclose(f);
    if (!whole) {
        mosquitto_free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

static bool parse_number(const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (!end || end == v || *end || n < lo || n > hi) {
        return false;
    }
    *out = n;
    return true;
}

/* The options of remote mode. */
struct remote_options {
    const char *server, *server_name, *ca, *pin, *token_file;
    long cache_entries, cache_secs, source_rate, report_secs;
};

/* Start the service validator (remote mode). */
static int start_remote(struct plugin *p, const struct remote_options *o) {
    if (!o->token_file || (!o->ca) == (!o->pin)) {
        return fail("remote mode needs plugin_opt_token_file and one of plugin_opt_ca_file or "
                    "plugin_opt_pin");
    }
    /* The certificate's name defaults to the address's host ("[::1]:4434" gives "::1"). */
    char name[256];
    if (o->server_name) {
        snprintf(name, sizeof name, "%s", o->server_name);
    } else {
        const char *colon = strrchr(o->server, ':');
        size_t n = colon ? (size_t)(colon - o->server) : strlen(o->server);
        const char *h = o->server;
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), h);
    }
    size_t token_len = 0, ca_len = 0;
    char *token = read_small_file(o->token_file, &token_len);
    if (!token || token_len == 0) {
        mosquitto_free(token);
        mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: cannot read the token file %s", o->token_file);
        return MOSQ_ERR_INVAL;
    }
    tessera_result r;
    if (o->ca) {
        char *ca = read_small_file(o->ca, &ca_len);
        if (!ca) {
            wipe(token, token_len);
            mosquitto_free(token);
            mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: cannot read the CA file %s", o->ca);
            return MOSQ_ERR_INVAL;
        }
        r = tessera_service_validator_new(o->server, name, (const uint8_t *)ca, ca_len,
                                          (const uint8_t *)token, token_len, &p->remote);
        mosquitto_free(ca);
    } else {
        r = tessera_service_validator_new_pinned(o->server, name, o->pin, (const uint8_t *)token,
                                                 token_len, &p->remote);
    }
    wipe(token, token_len);
    mosquitto_free(token);
    if (r == TESSERA_OK) {
        r = tessera_service_validator_set_cache(p->remote, (uint32_t)o->cache_entries,
                                                (uint32_t)o->cache_secs);
    }
    if (r == TESSERA_OK) {
        r = tessera_service_validator_set_source_limit(p->remote, (uint32_t)(2 * o->source_rate),
                                                       (uint32_t)o->source_rate);
    }
    if (r != TESSERA_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: cannot use the server %s (name %s): %s",
                             o->server, name, tessera_result_message(r));
        return MOSQ_ERR_INVAL;
    }
    p->remote_status = TESSERA_PENDING;
    p->report_secs = o->report_secs;
    mosquitto_log_printf(MOSQ_LOG_INFO, "tessera: remote mode on %s (certificate name %s)",
                         o->server, name);
    return MOSQ_ERR_SUCCESS;
}

/* Start the local validator (local mode). */
static int start_local(struct plugin *p, const char *data_dir) {
    tessera_result r = tessera_local_validator_new(data_dir, &p->local);
    if (r == TESSERA_OK) {
        r = tessera_local_validator_revocation_cursor(p->local, &p->cursor);
    }
    if (r != TESSERA_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: cannot open the data directory %s: %s",
                             data_dir, tessera_result_message(r));
        return MOSQ_ERR_INVAL;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "tessera: local mode on %s", data_dir);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count) {
    const char *data_dir = NULL, *topics = "devices/%u/#";
    struct remote_options remote = {
        .cache_entries = 100000, .cache_secs = 60, .source_rate = 10, .report_secs = 60};
    long recheck_ms = 250;
    for (int i = 0; i < option_count; i++) {
        const char *k = options[i].key, *v = options[i].value;
        if (strcmp(k, "data_dir") == 0) {
            data_dir = v;
        } else if (strcmp(k, "topics") == 0) {
            topics = v;
        } else if (strcmp(k, "recheck_ms") == 0) {
            if (!parse_number(v, 10, 60000, &recheck_ms)) {
                return fail("plugin_opt_recheck_ms must be 10 to 60000");
            }
        } else if (strcmp(k, "server") == 0) {
            remote.server = v;
        } else if (strcmp(k, "server_name") == 0) {
            remote.server_name = v;
        } else if (strcmp(k, "ca_file") == 0) {
            remote.ca = v;
        } else if (strcmp(k, "pin") == 0) {
            remote.pin = v;
        } else if (strcmp(k, "token_file") == 0) {
            remote.token_file = v;
        } else if (strcmp(k, "cache_entries") == 0) {
            if (!parse_number(v, 1, 10000000, &remote.cache_entries)) {
                return fail("plugin_opt_cache_entries must be 1 to 10000000");
            }
        } else if (strcmp(k, "report_secs") == 0) {
            if (!parse_number(v, 1, 3600, &remote.report_secs)) {
                return fail("plugin_opt_report_secs must be 1 to 3600");
            }
        } else if (strcmp(k, "source_rate") == 0) {
            if (!parse_number(v, 1, 100000, &remote.source_rate)) {
                return fail("plugin_opt_source_rate must be 1 to 100000");
            }
        } else if (strcmp(k, "cache_secs") == 0) {
            if (!parse_number(v, 1, 3600, &remote.cache_secs)) {
                return fail("plugin_opt_cache_secs must be 1 to 3600");
            }
        } else {
            mosquitto_log_printf(MOSQ_LOG_ERR, "tessera: unknown option plugin_opt_%s", k);
            return MOSQ_ERR_INVAL;
        }
    }
    if ((!data_dir) == (!remote.server)) {
        return fail("give either plugin_opt_data_dir (local mode: the Tessera server's data "
                    "directory) or plugin_opt_server (remote mode: its admin endpoint)");
    }
    struct plugin *p = mosquitto_calloc(1, sizeof *p);
    if (!p) {
        return MOSQ_ERR_NOMEM;
    }
    p->id = identifier;
    p->recheck_ns = recheck_ms * 1000000L;
    int rc = parse_topics(p, topics);
    if (rc == MOSQ_ERR_SUCCESS) {
        rc = data_dir ? start_local(p, data_dir) : start_remote(p, &remote);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        plugin_free(p);
        return rc;
    }
    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, p)) {
        plugin_free(p);
        return fail("could not register callbacks");
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "tessera: devices may use: %s", topics);
    *userdata = p;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count) {
    struct plugin *p = userdata;
    (void)options;
    (void)option_count;
    if (p) {
        mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
        mosquitto_callback_unregister(p->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
        mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
        mosquitto_callback_unregister(p->id, MOSQ_EVT_TICK, on_tick, NULL);
    }
    plugin_free(p);
    return MOSQ_ERR_SUCCESS;
}
