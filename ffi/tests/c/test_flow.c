/* A full device flow from C against a real Tessera server, driven by ffi/tests/c_api.rs:
 *   test_flow SERVER_ADDR CA_PEM_PATH PT DATA_DIR
 * It provisions (printing "code XXXX-XXXX" from the show-code callback, which the driver reads
 * and approves through the admin client), prints "registered DEVICE_ID GENERATION", refreshes,
 * prints "refreshed GENERATION", then waits for a line on stdin (the driver revokes the
 * registration first) and refreshes again, expecting TESSERA_REVOKED. The network validator and
 * the local validator (on the running server's DATA_DIR) check the RT before and after. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tessera.h"

struct store { uint8_t data[4096]; size_t len; int saves; };

static void show_code(void *userdata, const char *code) {
    (void)userdata;
    printf("code %s\n", code);
    fflush(stdout);
}

static int32_t load(void *userdata, uint8_t *buf, size_t cap, size_t *written) {
    struct store *s = userdata;
    if (s->len == 0 || s->len > cap) return 1;
    memcpy(buf, s->data, s->len);
    *written = s->len;
    return 0;
}

static void save(void *userdata, const uint8_t *data, size_t len) {
    struct store *s = userdata;
    if (len <= sizeof s->data) { memcpy(s->data, data, len); s->len = len; s->saves++; }
}

static void log_line(void *userdata, const char *line) {
    (void)userdata;
    fprintf(stderr, "tessera: %s\n", line);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

#define TRY(call) do { tessera_result r_ = (call); if (r_ != TESSERA_OK) { \
    fprintf(stderr, "%s failed: %u %s\n", #call, (unsigned)r_, tessera_result_message(r_)); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: test_flow ADDR CA_PEM PT DATA_DIR\n"); return 2; }
    static struct store store;
    size_t ca_len = 0;
    char *ca = read_file(argv[2], &ca_len);
    if (!ca) { fprintf(stderr, "cannot read %s\n", argv[2]); return 2; }

    tessera_device_config *cfg = NULL;
    TRY(tessera_device_config_new(argv[1], "localhost", &cfg));
    TRY(tessera_device_config_set_ca_pem(cfg, (const uint8_t *)ca, ca_len));
    free(ca);
    TRY(tessera_device_config_set_pt(cfg, (const uint8_t *)argv[3], strlen(argv[3])));
    TRY(tessera_device_config_set_device_id(cfg, "c-device-1"));
    TRY(tessera_device_config_add_attribute(cfg, "fw", "1.0.0"));
    TRY(tessera_device_config_set_callbacks(cfg, &store, show_code, load, save, log_line));
    tessera_device_client *client = NULL;
    TRY(tessera_device_client_new(&cfg, &client));

    TRY(tessera_device_client_ensure_registered(client, 60000));
    uint8_t rt[512], id[128];
    size_t rt_len = 0, id_len = 0;
    TRY(tessera_device_client_copy_rt(client, rt, sizeof rt, &rt_len));
    TRY(tessera_device_client_copy_device_id(client, id, sizeof id, &id_len));
    tessera_rt_info info;
    TRY(tessera_rt_inspect(rt, rt_len, &info));
    /* Two saves: the pending operation (so a reboot resumes it), then the registration. */
    if (store.saves != 2) { fprintf(stderr, "expected two saves, got %d\n", store.saves); return 1; }
    if (memmem(store.data, store.len, rt, rt_len) == NULL ||
        memmem(store.data, store.len, "\"pending\"", 9) != NULL) {
        fprintf(stderr, "the stored document does not hold just the registration\n");
        return 1;
    }
    uint8_t small[8];
    size_t n = 0;
    /* Too small: the size needed comes back, so the caller can retry with a buffer of it. */
    if (tessera_device_client_copy_rt(client, small, sizeof small, &n) != TESSERA_BUFFER_TOO_SMALL || n != rt_len) return 1;
    if (rt_len > TESSERA_RT_MAX_LEN || store.len > TESSERA_STORED_MAX) return 1;
    printf("registered %.*s %u\n", (int)id_len, (const char *)id, (unsigned)info.generation);
    fflush(stdout);

    TRY(tessera_device_client_refresh(client));
    TRY(tessera_device_client_copy_rt(client, rt, sizeof rt, &rt_len));
    TRY(tessera_rt_inspect(rt, rt_len, &info));
    int64_t due = 0;
    TRY(tessera_device_client_next_refresh_at(client, &due));

    /* A service (an MQTT broker plugin, say) checks the RT with the server. */
    size_t ca2_len = 0;
    char *ca2 = read_file(argv[2], &ca2_len);
    tessera_validator *v = NULL;
    TRY(tessera_validator_new(argv[1], "localhost", (const uint8_t *)ca2, ca2_len, &v));
    free(ca2);
    tessera_rt_identity who;
    TRY(tessera_validator_check(v, rt, rt_len, &who));
    if (strcmp(who.device_id, "c-device-1") != 0 || who.generation != 2) { fprintf(stderr, "wrong identity\n"); return 1; }
    if (tessera_validator_check(v, rt, 10, &who) != TESSERA_TOKEN_WRONG_LENGTH) return 1;
    if (tessera_validator_check(NULL, rt, rt_len, &who) != TESSERA_NULL_PARAMETER) return 1;
    {
        /* A server name the certificate does not carry: a certificate error, not a connection
         * error (retrying would not help). */
        size_t ca3_len = 0;
        char *ca3 = read_file(argv[2], &ca3_len);
        tessera_validator *wrong = NULL;
        TRY(tessera_validator_new(argv[1], "wrong.example", (const uint8_t *)ca3, ca3_len, &wrong));
        free(ca3);
        tessera_result cr = tessera_validator_check(wrong, rt, rt_len, &who);
        tessera_validator_free(wrong);
        if (cr != TESSERA_CERTIFICATE) { fprintf(stderr, "wrong server name gave %u\n", (unsigned)cr); return 1; }
    }
    /* A service on the server's host checks it locally against the data directory. */
    tessera_local_validator *lv = NULL;
    if (tessera_local_validator_new("/nonexistent/tessera", &lv) != TESSERA_CONFIG || lv != NULL) return 1;
    TRY(tessera_local_validator_new(argv[4], &lv));
    tessera_rt_identity here;
    memset(&here, 0, sizeof here);
    TRY(tessera_local_validator_check(lv, rt, rt_len, &here));
    if (strcmp(here.device_id, who.device_id) != 0 || here.generation != 2 ||
        here.registration_id != who.registration_id || here.expires_at != who.expires_at) {
        fprintf(stderr, "local and network validators disagree\n");
        return 1;
    }
    uint8_t typo[512];
    memcpy(typo, rt, rt_len);
    typo[rt_len - 1] ^= 1; /* a mistyped token, caught before any key is used */
    tessera_result bad = tessera_local_validator_check(lv, typo, rt_len, &here);
    if (bad != TESSERA_TOKEN_BAD_CHECKSUM && bad != TESSERA_TOKEN_BAD_ENCODING) return 1;
    /* A broker follows revocations from here on. */
    uint64_t cursor = 0;
    TRY(tessera_local_validator_revocation_cursor(lv, &cursor));
    printf("refreshed %u\n", (unsigned)info.generation);
    fflush(stdout);

    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    tessera_result vr = tessera_validator_check(v, rt, rt_len, &who);
    printf("validator after revocation %u\n", (unsigned)vr);
    printf("local validator after revocation %u\n", (unsigned)tessera_local_validator_check(lv, rt, rt_len, &here));
    uint64_t revoked[4];
    size_t nrev = 0;
    uint64_t before = cursor;
    TRY(tessera_local_validator_revocations(lv, &cursor, revoked, 4, &nrev));
    if (nrev != 1 || revoked[0] != who.registration_id || cursor <= before) {
        fprintf(stderr, "revocations: %zu ids, cursor %llu -> %llu\n", nrev,
                (unsigned long long)before, (unsigned long long)cursor);
        return 1;
    }
    TRY(tessera_local_validator_revocations(lv, &cursor, revoked, 4, &nrev));
    if (nrev != 0) return 1;
    printf("followed the revocation of registration %llu\n", (unsigned long long)revoked[0]);
    tessera_local_validator_free(lv);
    tessera_local_validator_free(NULL);
    tessera_validator_free(v);
    tessera_validator_free(NULL);
    tessera_result r = tessera_device_client_refresh(client);
    printf("after revocation %u %s\n", (unsigned)r, tessera_result_message(r));
    fflush(stdout);
    tessera_device_client_free(client);
    return r == TESSERA_REVOKED ? 0 : 1;
}
