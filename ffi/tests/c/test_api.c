/* C tests of libtessera's API: token helpers against the test vectors, and the NULL, length and
 * ownership rules of every exported function. Built with -std=c11 -Wall -Wextra -Wpedantic
 * -Werror and run under AddressSanitizer + UndefinedBehaviorSanitizer and under Valgrind by
 * ffi/tests/c_api.rs, which passes the vectors as arguments:
 *   test_api PT RT RT_REGISTRATION RT_GENERATION RT_KEY_ID RT_ISSUED RT_EXPIRES BAD_PT... --rt BAD_RT... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tessera.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define EXPECT(call, want) do { tessera_result r_ = (call); checks++; if (r_ != (want)) { failures++; \
    fprintf(stderr, "%s:%d: %s returned %u (%s), want %u\n", __FILE__, __LINE__, #call, \
            (unsigned)r_, tessera_result_message(r_), (unsigned)(want)); } } while (0)

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static void test_messages(void) {
    const unsigned codes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 102, 103, 104, 210, 211, 212, 213,
                              214, 215, 230, 299, 300, 301, 302, 303, 304, 310, 311, 312};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *m = tessera_result_message(codes[i]);
        CHECK(m != NULL && strlen(m) > 0 && strcmp(m, "unknown result code") != 0);
    }
    CHECK(strcmp(tessera_result_message(12345), "unknown result code") == 0);
}

static void test_tokens(int argc, char **argv) {
    const char *pt = argv[1], *rt = argv[2];
    EXPECT(tessera_pt_check(u8(pt), strlen(pt)), TESSERA_OK);
    tessera_rt_info info;
    memset(&info, 0xAB, sizeof info);
    EXPECT(tessera_rt_inspect(u8(rt), strlen(rt), &info), TESSERA_OK);
    CHECK(info.registration_id == strtoull(argv[3], NULL, 10));
    CHECK(info.generation == strtoul(argv[4], NULL, 10));
    CHECK(info.key_id == strtoul(argv[5], NULL, 10));
    CHECK(info.issued_at == strtoull(argv[6], NULL, 10));
    CHECK(info.expires_at == strtoull(argv[7], NULL, 10));
    CHECK(info.binding == strtoul(argv[8], NULL, 10));

    /* Invalid PTs after argv[8] until "--rt", then invalid RTs, each as the documented error
     * (docs/token-vectors.json) and the text: each must be refused with exactly that error,
     * and a refused inspect writes nothing. */
    int rt_mode = 0;
    for (int i = 9; i < argc; i++) {
        if (strcmp(argv[i], "--rt") == 0) { rt_mode = 1; continue; }
        const char *error = argv[i++];
        CHECK(i < argc);
        if (i >= argc) break;
        tessera_result r;
        if (rt_mode) {
            tessera_rt_info untouched;
            memset(&untouched, 0x5A, sizeof untouched);
            r = tessera_rt_inspect(u8(argv[i]), strlen(argv[i]), &untouched);
            CHECK(untouched.registration_id == 0x5A5A5A5A5A5A5A5AULL);
        } else {
            r = tessera_pt_check(u8(argv[i]), strlen(argv[i]));
        }
        if (strcmp(error, "wrong_prefix") == 0) {
            CHECK(r == TESSERA_TOKEN_WRONG_PREFIX);
        } else if (strcmp(error, "wrong_length") == 0) {
            CHECK(r == TESSERA_TOKEN_WRONG_LENGTH);
        } else if (strcmp(error, "bad_encoding") == 0) {
            CHECK(r == TESSERA_TOKEN_BAD_ENCODING);
        } else if (strcmp(error, "bad_encoding_or_checksum") == 0) {
            CHECK(r == TESSERA_TOKEN_BAD_ENCODING || r == TESSERA_TOKEN_BAD_CHECKSUM);
        } else if (strcmp(error, "unknown_version") == 0) {
            CHECK(r == TESSERA_TOKEN_UNKNOWN_VERSION);
        } else {
            fprintf(stderr, "unknown documented error %s\n", error);
            CHECK(0);
        }
    }
    /* Every truncation and every single-bit flip of the PT is refused. */
    size_t n = strlen(pt);
    char *copy = malloc(n + 1);
    for (size_t len = 1; len < n; len++) CHECK(tessera_pt_check(u8(pt), len) != TESSERA_OK);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 7; bit++) {
            memcpy(copy, pt, n + 1);
            copy[i] = (char)(copy[i] ^ (1 << bit));
            CHECK(tessera_pt_check(u8(copy), n) != TESSERA_OK);
        }
    }
    free(copy);

    /* NULL, zero and oversized lengths. */
    EXPECT(tessera_pt_check(NULL, 10), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_pt_check(u8(pt), 0), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_pt_check(u8(pt), (size_t)1 << 30), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_rt_inspect(NULL, 10, &info), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_rt_inspect(u8(rt), strlen(rt), NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_rt_inspect(u8(rt), 0, &info), TESSERA_INVALID_LENGTH);
}

/* Storage that answers load with a length above cap, and a log that keeps the last line. */
static char last_log[512];
static int32_t oversized_load(void *ud, uint8_t *buf, size_t cap, size_t *written) {
    (void)ud; (void)buf;
    *written = cap + 1;
    return 0;
}
static int32_t corrupt_load(void *ud, uint8_t *buf, size_t cap, size_t *written) {
    (void)ud;
    const char *doc = "{\"rt\": 5";
    if (strlen(doc) > cap) return 1;
    memcpy(buf, doc, strlen(doc));
    *written = strlen(doc);
    return 0;
}
static void keep_log(void *ud, const char *line) {
    (void)ud;
    snprintf(last_log, sizeof last_log, "%s", line);
}

/* A load callback that misbehaves, or returns something save never stored, is reported through
 * the log callback (and the device provisions again). */
static void test_bad_stored_documents_are_logged(const char *pt) {
    tessera_load_cb loads[2] = {oversized_load, corrupt_load};
    const char *want[2] = {"more than", "ignoring the stored registration"};
    for (int i = 0; i < 2; i++) {
        tessera_device_config *cfg = NULL;
        tessera_device_client *client = NULL;
        last_log[0] = 0;
        EXPECT(tessera_device_config_new("127.0.0.1:9", "localhost", &cfg), TESSERA_OK);
        EXPECT(tessera_device_config_set_pt(cfg, u8(pt), strlen(pt)), TESSERA_OK);
        EXPECT(tessera_device_config_set_pin(cfg, "00000000000000000000000000000000000000000000000000000000000000aa"), TESSERA_OK);
        EXPECT(tessera_device_config_set_callbacks(cfg, NULL, NULL, loads[i], NULL, keep_log), TESSERA_OK);
        EXPECT(tessera_device_client_new(&cfg, &client), TESSERA_OK);
        CHECK(strstr(last_log, want[i]) != NULL);
        EXPECT(tessera_device_client_refresh(client), TESSERA_NOT_AVAILABLE);
        tessera_device_client_free(client);
    }
}

static void test_device_config(const char *pt) {
    tessera_device_config *cfg = NULL;
    EXPECT(tessera_device_config_new(NULL, "localhost", &cfg), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("127.0.0.1:4433", NULL, &cfg), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("127.0.0.1:4433", "localhost", NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("", "localhost", &cfg), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_new("not an address", "localhost", &cfg), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_new("localhost", "localhost", &cfg), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_new("no-such-host.invalid:4433", "localhost", &cfg), TESSERA_CONNECTION);
    /* A host name is resolved (the server's default certificate names localhost). */
    EXPECT(tessera_device_config_new("localhost:4433", "localhost", &cfg), TESSERA_OK);
    tessera_device_config_free(cfg);
    cfg = NULL;
    EXPECT(tessera_device_config_new("\xff\xfe", "localhost", &cfg), TESSERA_INVALID_UTF8);
    CHECK(cfg == NULL); /* outputs are written only on success */
    EXPECT(tessera_device_config_new("127.0.0.1:4433", "localhost", &cfg), TESSERA_OK);
    CHECK(cfg != NULL);

    EXPECT(tessera_device_config_set_pt(NULL, u8(pt), strlen(pt)), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, NULL, 5), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, u8(pt), 0), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_pt(cfg, u8("tspt_short"), 10), TESSERA_TOKEN_WRONG_LENGTH);
    EXPECT(tessera_device_config_set_pin(cfg, "abc"), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_pin(NULL, "abc"), TESSERA_NULL_PARAMETER);
    /* Several pins (a CA rollover), separated by commas; each must be a whole SHA-256. */
    EXPECT(tessera_device_config_set_pin(cfg,
               "00000000000000000000000000000000000000000000000000000000000000aa,"
               "00000000000000000000000000000000000000000000000000000000000000bb"),
           TESSERA_OK);
    EXPECT(tessera_device_config_set_pin(cfg,
               "00000000000000000000000000000000000000000000000000000000000000aa,abc"),
           TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_pin(cfg, ","), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_ca_pem(cfg, NULL, 3), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_ca_pem(cfg, u8("x"), 0), TESSERA_INVALID_LENGTH);
    /* PEM is checked where it enters: no certificate, or a broken one, is refused at once. */
    EXPECT(tessera_device_config_set_ca_pem(cfg, u8("not pem"), 7), TESSERA_INVALID_ARGUMENT);
    {
        const char *broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        EXPECT(tessera_device_config_set_ca_pem(cfg, u8(broken), strlen(broken)), TESSERA_INVALID_ARGUMENT);
    }
    /* One rule: lengths out of range are INVALID_LENGTH, content not allowed INVALID_ARGUMENT. */
    {
        char long_id[66];
        memset(long_id, 'a', 65);
        long_id[65] = 0;
        EXPECT(tessera_device_config_set_device_id(cfg, long_id), TESSERA_INVALID_LENGTH);
        char long_value[130];
        memset(long_value, 'v', 129);
        long_value[129] = 0;
        EXPECT(tessera_device_config_add_attribute(cfg, "serial", long_value), TESSERA_INVALID_LENGTH);
        EXPECT(tessera_device_config_add_attribute(cfg, "", "x"), TESSERA_INVALID_LENGTH);
        CHECK(strlen(long_id) > TESSERA_DEVICE_ID_MAX_LEN);
    }
    EXPECT(tessera_device_config_set_timeouts(cfg, 600001, 1000), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_device_id(cfg, "bad id"), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_device_id(cfg, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_device_id(cfg, "pump-17"), TESSERA_OK);
    EXPECT(tessera_device_config_add_attribute(cfg, "serial", "SN-1"), TESSERA_OK);
    EXPECT(tessera_device_config_add_attribute(cfg, "Bad Key", "x"), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_add_attribute(cfg, NULL, "x"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_timeouts(cfg, 0, 1000), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_timeouts(NULL, 10, 1000), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_timeouts(cfg, 5000, 20000), TESSERA_OK);
    EXPECT(tessera_device_config_set_callbacks(NULL, NULL, NULL, NULL, NULL, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_callbacks(cfg, NULL, NULL, NULL, NULL, NULL), TESSERA_OK);

    /* Without a trust setting and a PT the client cannot be made; the config is consumed and
     * the caller's pointer set to NULL, so using it again is refused, not a use-after-free. */
    tessera_device_client *client = NULL;
    EXPECT(tessera_device_client_new(&cfg, &client), TESSERA_CONFIG);
    CHECK(client == NULL && cfg == NULL);
    EXPECT(tessera_device_client_new(&cfg, &client), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, u8(pt), strlen(pt)), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pin(cfg, "00"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_device_id(cfg, "pump-17"), TESSERA_NULL_PARAMETER);
    tessera_device_config_free(cfg); /* NULL: a no-op */

    /* Consumed even when the output pointer is NULL. */
    EXPECT(tessera_device_config_new("127.0.0.1:9", "localhost", &cfg), TESSERA_OK);
    EXPECT(tessera_device_config_set_pt(cfg, u8(pt), strlen(pt)), TESSERA_OK);
    EXPECT(tessera_device_config_set_pin(cfg, "00000000000000000000000000000000000000000000000000000000000000aa"), TESSERA_OK);
    EXPECT(tessera_device_client_new(&cfg, NULL), TESSERA_NULL_PARAMETER);
    CHECK(cfg == NULL);

    /* A complete config gives a client; nothing is sent until it is used. */
    EXPECT(tessera_device_config_new("127.0.0.1:9", "localhost", &cfg), TESSERA_OK);
    EXPECT(tessera_device_config_set_pt(cfg, u8(pt), strlen(pt)), TESSERA_OK);
    EXPECT(tessera_device_config_set_pin(cfg, "00000000000000000000000000000000000000000000000000000000000000aa"), TESSERA_OK);
    EXPECT(tessera_device_client_new(&cfg, &client), TESSERA_OK);
    CHECK(client != NULL && cfg == NULL);

    uint8_t buf[256];
    size_t written = 12345;
    int64_t at = 7;
    EXPECT(tessera_device_client_copy_rt(client, buf, sizeof buf, &written), TESSERA_NOT_AVAILABLE);
    EXPECT(tessera_device_client_copy_device_id(client, buf, sizeof buf, &written), TESSERA_NOT_AVAILABLE);
    EXPECT(tessera_device_client_next_refresh_at(client, &at), TESSERA_NOT_AVAILABLE);
    CHECK(written == 12345 && at == 7);
    EXPECT(tessera_device_client_copy_rt(NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_refresh(NULL), TESSERA_NULL_PARAMETER);
    /* Nothing to refresh before the first registration: the header's "not registered". */
    EXPECT(tessera_device_client_refresh(client), TESSERA_NOT_AVAILABLE);
    EXPECT(tessera_device_client_ensure_registered(NULL, 10), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_next_refresh_at(NULL, &at), TESSERA_NULL_PARAMETER);
    {
        /* Nothing listens on port 9: provisioning fails within the timeout, cleanly. */
        tessera_result r = tessera_device_client_ensure_registered(client, 300);
        CHECK(r == TESSERA_TIMEOUT || r == TESSERA_CONNECTION);
    }
    tessera_device_client_free(client);

    tessera_device_config_free(NULL);
    tessera_device_client_free(NULL);
}

/* Every exported function: NULL in each pointer argument, zero and oversized lengths. Each
 * returns its documented code (TESSERA_NULL_PARAMETER, TESSERA_INVALID_LENGTH) and writes
 * nothing. `data_dir` is a Tessera data directory made by the driver (for the local validator).
 * Functions returning void (the *_free functions) are called with NULL and must not crash. */
static void test_every_function_rejects_bad_arguments(const char *pt, const char *rt, const char *data_dir) {
    const size_t huge = (size_t)1 << 30;
    const uint8_t *p = u8(pt), *r = u8(rt);
    size_t plen = strlen(pt), rlen = strlen(rt);
    uint8_t buf[512];
    size_t written = 77;
    int64_t at = 77;
    tessera_rt_info info;
    tessera_rt_identity who;
    memset(&who, 0x5A, sizeof who);

    /* token helpers */
    EXPECT(tessera_pt_check(NULL, plen), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_pt_check(p, 0), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_pt_check(p, huge), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_rt_inspect(NULL, rlen, &info), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_rt_inspect(r, rlen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_rt_inspect(r, 0, &info), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_rt_inspect(r, huge, &info), TESSERA_INVALID_LENGTH);

    /* configuration */
    tessera_device_config *cfg = NULL;
    EXPECT(tessera_device_config_new(NULL, "localhost", &cfg), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("127.0.0.1:9", NULL, &cfg), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("127.0.0.1:9", "localhost", NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_new("", "localhost", &cfg), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_new("127.0.0.1:9", "", &cfg), TESSERA_INVALID_LENGTH);
    CHECK(cfg == NULL);
    EXPECT(tessera_device_config_new("127.0.0.1:9", "localhost", &cfg), TESSERA_OK);
    EXPECT(tessera_device_config_set_ca_pem(NULL, p, plen), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_ca_pem(cfg, NULL, plen), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_ca_pem(cfg, p, 0), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_ca_pem(cfg, p, huge), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_pin(NULL, "00"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pin(cfg, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pin(cfg, ""), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_pt(NULL, p, plen), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, NULL, plen), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, p, 0), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_pt(cfg, p, huge), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_device_id(NULL, "d"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_device_id(cfg, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_device_id(cfg, ""), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_add_attribute(NULL, "k", "v"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_add_attribute(cfg, NULL, "v"), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_add_attribute(cfg, "k", NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_add_attribute(cfg, "", "v"), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_config_set_timeouts(NULL, 1000, 1000), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_timeouts(cfg, 0, 1000), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_timeouts(cfg, 1000, 0), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_device_config_set_callbacks(NULL, NULL, NULL, NULL, NULL, NULL), TESSERA_NULL_PARAMETER);
    tessera_device_config_free(NULL);

    /* client */
    tessera_device_client *client = NULL;
    EXPECT(tessera_device_client_new(NULL, &client), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_config_set_pt(cfg, p, plen), TESSERA_OK);
    EXPECT(tessera_device_config_set_pin(cfg, "00000000000000000000000000000000000000000000000000000000000000aa"), TESSERA_OK);
    EXPECT(tessera_device_client_new(&cfg, &client), TESSERA_OK);
    EXPECT(tessera_device_client_ensure_registered(NULL, 10), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_refresh(NULL), TESSERA_NULL_PARAMETER);
    /* Nothing to refresh before the first registration: the header's "not registered". */
    EXPECT(tessera_device_client_refresh(client), TESSERA_NOT_AVAILABLE);
    EXPECT(tessera_device_client_copy_rt(NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_rt(client, NULL, sizeof buf, &written), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_rt(client, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_rt(client, buf, 0, &written), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_client_copy_rt(client, buf, huge, &written), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_client_copy_device_id(NULL, buf, sizeof buf, &written), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_device_id(client, NULL, sizeof buf, &written), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_device_id(client, buf, sizeof buf, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_copy_device_id(client, buf, 0, &written), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_client_copy_device_id(client, buf, huge, &written), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_device_client_next_refresh_at(NULL, &at), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_device_client_next_refresh_at(client, NULL), TESSERA_NULL_PARAMETER);
    CHECK(written == 77 && at == 77);
    tessera_device_client_free(client);
    tessera_device_client_free(NULL);

    /* network validator */
    tessera_validator *v = NULL;
    EXPECT(tessera_validator_new(NULL, "localhost", p, plen, &v), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new("127.0.0.1:9", NULL, p, plen, &v), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new("127.0.0.1:9", "localhost", NULL, plen, &v), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new("127.0.0.1:9", "localhost", p, plen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new("127.0.0.1:9", "localhost", p, 0, &v), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_validator_new("127.0.0.1:9", "localhost", p, huge, &v), TESSERA_INVALID_LENGTH);
    CHECK(v == NULL);
    EXPECT(tessera_validator_check(NULL, r, rlen, &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new("127.0.0.1:9", "localhost", u8("not pem"), 7, &v), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_validator_new_pinned(NULL, "localhost", "00", &v), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new_pinned("127.0.0.1:9", "localhost", NULL, &v), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new_pinned("127.0.0.1:9", "localhost", "00", NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_new_pinned("127.0.0.1:9", "localhost", "00", &v), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_validator_new_pinned("127.0.0.1:9", "localhost",
                                        "00000000000000000000000000000000000000000000000000000000000000aa", &v), TESSERA_OK);
    EXPECT(tessera_validator_set_timeout(NULL, 1000), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_set_timeout(v, 0), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_validator_set_timeout(v, 600001), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_validator_set_timeout(v, 200), TESSERA_OK);
    EXPECT(tessera_validator_set_log(NULL, NULL, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_validator_set_log(v, NULL, keep_log), TESSERA_OK);
    last_log[0] = 0;
    {
        /* Nothing listens on port 9: the check fails within the timeout, and says so. */
        tessera_result rr = tessera_validator_check(v, r, rlen, &who);
        CHECK(rr == TESSERA_TIMEOUT || rr == TESSERA_CONNECTION);
        CHECK(strstr(last_log, "RT refused") != NULL && strstr(last_log, "tsrt_") == NULL);
    }
    tessera_validator_free(v);
    v = NULL;
    tessera_validator_free(NULL);

    /* local validator */
    tessera_local_validator *lv = NULL;
    EXPECT(tessera_local_validator_new(NULL, &lv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_new(data_dir, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_new("", &lv), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_local_validator_new("/nonexistent/tessera-data", &lv), TESSERA_CONFIG);
    CHECK(lv == NULL);
    EXPECT(tessera_local_validator_new(data_dir, &lv), TESSERA_OK);
    CHECK(lv != NULL);
    EXPECT(tessera_local_validator_check(NULL, r, rlen, &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_check(lv, NULL, rlen, &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_check(lv, r, rlen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_check(lv, r, 0, &who), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_local_validator_check(lv, r, huge, &who), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_local_validator_check(lv, r, 10, &who), TESSERA_TOKEN_WRONG_LENGTH);
    /* The vector RT is MAC'd under the vectors' root, not this directory's. */
    EXPECT(tessera_local_validator_check(lv, r, rlen, &who), TESSERA_UNAUTHENTICATED);
    CHECK(who.registration_id == 0x5A5A5A5A5A5A5A5AULL); /* nothing written on failure */
    uint64_t cursor = 0, ids[2];
    size_t n = 0;
    EXPECT(tessera_local_validator_revocation_cursor(NULL, &cursor), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocation_cursor(lv, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocation_cursor(lv, &cursor), TESSERA_OK);
    uint64_t start = cursor;
    EXPECT(tessera_local_validator_revocations(NULL, &cursor, ids, 2, &n), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocations(lv, NULL, ids, 2, &n), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocations(lv, &cursor, NULL, 2, &n), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocations(lv, &cursor, ids, 2, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_local_validator_revocations(lv, &cursor, ids, 0, &n), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_local_validator_revocations(lv, &cursor, ids, TESSERA_REVOCATIONS_MAX + 1, &n),
           TESSERA_INVALID_LENGTH);
    CHECK(cursor == start && n == 0); /* nothing written on an error */
    EXPECT(tessera_local_validator_revocations(lv, &cursor, ids, 2, &n), TESSERA_OK);
    CHECK(n == 0 && cursor == start); /* nothing revoked in this directory */
    tessera_local_validator_free(lv);
    tessera_local_validator_free(NULL);

    /* service validator (port 9: nothing listens, so it never follows; no check waits) */
    const char *tok = getenv("TESSERA_C_TEST_SERVICE_TOKEN"); /* valid in form only */
    CHECK(tok != NULL);
    if (!tok) return;
    size_t tlen = strlen(tok);
    tessera_service_validator *sv = NULL;
    EXPECT(tessera_service_validator_new(NULL, "localhost", p, plen, u8(tok), tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", NULL, p, plen, u8(tok), tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", NULL, plen, u8(tok), tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, plen, NULL, tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, plen, u8(tok), tlen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, 0, u8(tok), tlen, &sv), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, plen, u8(tok), 0, &sv), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", u8("not pem"), 7, u8(tok), tlen, &sv), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_new("127.0.0.1", "localhost", p, plen, u8(tok), tlen, &sv), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, plen, u8("tsat_short"), 10, &sv), TESSERA_TOKEN_WRONG_LENGTH);
    EXPECT(tessera_service_validator_new("127.0.0.1:9", "localhost", p, plen, p, plen, &sv), TESSERA_TOKEN_WRONG_PREFIX);
    EXPECT(tessera_service_validator_new_pinned(NULL, "localhost", "00", u8(tok), tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new_pinned("127.0.0.1:9", "localhost", NULL, u8(tok), tlen, &sv), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new_pinned("127.0.0.1:9", "localhost", "00", u8(tok), tlen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_new_pinned("127.0.0.1:9", "localhost", "00", u8(tok), tlen, &sv), TESSERA_INVALID_ARGUMENT);
    CHECK(sv == NULL);
    EXPECT(tessera_service_validator_new_pinned("127.0.0.1:9", "localhost",
                                                "00000000000000000000000000000000000000000000000000000000000000aa",
                                                u8(tok), tlen, &sv), TESSERA_OK);
    CHECK(sv != NULL);
    EXPECT(tessera_service_validator_set_cache(NULL, 10, 10), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_set_cache(sv, 0, 10), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_cache(sv, 10, 0), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_cache(sv, 10, 3601), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_cache(sv, 10, 10), TESSERA_OK);
    EXPECT(tessera_service_validator_set_clock_skew_leeway(NULL, 60), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_set_clock_skew_leeway(sv, 301), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_clock_skew_leeway(sv, 0), TESSERA_OK);
    EXPECT(tessera_service_validator_set_clock_skew_leeway(sv, 300), TESSERA_OK);
    EXPECT(tessera_service_validator_status(NULL), TESSERA_NULL_PARAMETER);
    memset(&who, 0x5A, sizeof who);
    EXPECT(tessera_service_validator_check(NULL, r, rlen, &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check(sv, NULL, rlen, &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check(sv, r, rlen, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check(sv, r, 0, &who), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_service_validator_check(sv, r, huge, &who), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_service_validator_check(sv, r, 10, &who), TESSERA_TOKEN_WRONG_LENGTH);
    EXPECT(tessera_service_validator_check_from(NULL, r, rlen, "10.0.0.1", &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check_from(sv, NULL, rlen, "10.0.0.1", &who), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check_from(sv, r, rlen, "10.0.0.1", NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_check_from(sv, r, 10, "10.0.0.1", &who), TESSERA_TOKEN_WRONG_LENGTH);
    EXPECT(tessera_service_validator_check_from(sv, r, rlen, "\xff\xfe", &who), TESSERA_INVALID_UTF8);
    EXPECT(tessera_service_validator_set_source_limit(NULL, 20, 10), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_set_source_limit(sv, 0, 10), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_source_limit(sv, 20, 0), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_source_limit(sv, 1000001, 10), TESSERA_INVALID_ARGUMENT);
    EXPECT(tessera_service_validator_set_source_limit(sv, 20, 10), TESSERA_OK);
    {
        tessera_service_validator_stats st;
        memset(&st, 0x5A, sizeof st);
        EXPECT(tessera_service_validator_get_stats(NULL, &st), TESSERA_NULL_PARAMETER);
        EXPECT(tessera_service_validator_get_stats(sv, NULL), TESSERA_NULL_PARAMETER);
        EXPECT(tessera_service_validator_get_stats(sv, &st), TESSERA_OK);
        /* Nothing answered yet (nothing answers here). */
        CHECK(st.answered_valid == 0 && st.over_quota == 0 && st.cached_valid == 0);
    }
    {
        /* Not following (yet, or ever: nothing answers): never let in, never waits. */
        tessera_result st = tessera_service_validator_status(sv);
        tessera_result rr = tessera_service_validator_check(sv, r, rlen, &who);
        tessera_result rf = tessera_service_validator_check_from(sv, r, rlen, "10.0.0.1", &who);
        CHECK(st != TESSERA_OK && rr != TESSERA_OK && rf != TESSERA_OK);
        CHECK(who.registration_id == 0x5A5A5A5A5A5A5A5AULL);
    }
    EXPECT(tessera_service_validator_revocations(NULL, ids, 2, &n), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_revocations(sv, NULL, 2, &n), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_revocations(sv, ids, 2, NULL), TESSERA_NULL_PARAMETER);
    EXPECT(tessera_service_validator_revocations(sv, ids, 0, &n), TESSERA_INVALID_LENGTH);
    EXPECT(tessera_service_validator_revocations(sv, ids, TESSERA_REVOCATIONS_MAX + 1, &n), TESSERA_INVALID_LENGTH);
    n = 7;
    EXPECT(tessera_service_validator_revocations(sv, ids, 2, &n), TESSERA_OK);
    CHECK(n == 0);
    tessera_service_validator_free(sv);
    tessera_service_validator_free(NULL);
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: test_api PT RT REG GEN KEY ISSUED EXPIRES BINDING [ERROR BAD_PT...] [--rt ERROR BAD_RT...]\n");
        return 2;
    }
    test_messages();
    {
        const char *want = getenv("TESSERA_C_TEST_VERSION");
        CHECK(want != NULL && tessera_version() != NULL && strcmp(tessera_version(), want) == 0);
    }
    test_tokens(argc, argv);
    test_device_config(argv[1]);
    test_bad_stored_documents_are_logged(argv[1]);
    const char *data_dir = getenv("TESSERA_C_TEST_DATA_DIR");
    if (!data_dir) {
        fprintf(stderr, "TESSERA_C_TEST_DATA_DIR is not set (ffi/tests/c_api.rs sets it)\n");
        return 2;
    }
    test_every_function_rejects_bad_arguments(argv[1], argv[2], data_dir);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
