/* Built against a libtessera compiled with the test-only `panic-test` feature and run with
 * TESSERA_FFI_PANIC=1: every function panics inside its boundary. Each must return
 * TESSERA_PANIC (void functions must simply return) and the process must survive. */
#include <stdio.h>
#include <string.h>
#include "tessera.h"

static int failures = 0, checks = 0;
#define PANICS(call) do { tessera_result r_ = (call); checks++; if (r_ != TESSERA_PANIC) { failures++; \
    fprintf(stderr, "%s returned %u, want TESSERA_PANIC\n", #call, (unsigned)r_); } } while (0)

int main(void) {
    const uint8_t tok[] = "tspt_x";
    tessera_rt_info info;
    tessera_device_config *cfg = NULL;
    tessera_device_client *client = NULL;
    uint8_t buf[64];
    size_t n = 0;
    int64_t at = 0;
    PANICS(tessera_pt_check(tok, 6));
    PANICS(tessera_rt_inspect(tok, 6, &info));
    PANICS(tessera_device_config_new("127.0.0.1:1", "localhost", &cfg));
    PANICS(tessera_device_config_set_ca_pem(cfg, tok, 6));
    PANICS(tessera_device_config_set_pin(cfg, "00"));
    PANICS(tessera_device_config_set_pt(cfg, tok, 6));
    PANICS(tessera_device_config_set_device_id(cfg, "d"));
    PANICS(tessera_device_config_add_attribute(cfg, "k", "v"));
    PANICS(tessera_device_config_set_timeouts(cfg, 1, 1));
    PANICS(tessera_device_config_set_callbacks(cfg, NULL, NULL, NULL, NULL, NULL));
    PANICS(tessera_device_client_new(&cfg, &client));
    PANICS(tessera_device_client_ensure_registered(client, 1));
    PANICS(tessera_device_client_refresh(client));
    PANICS(tessera_device_client_copy_rt(client, buf, sizeof buf, &n));
    PANICS(tessera_device_client_copy_device_id(client, buf, sizeof buf, &n));
    PANICS(tessera_device_client_next_refresh_at(client, &at));
    tessera_validator *v = NULL;
    tessera_rt_identity who;
    PANICS(tessera_validator_new("127.0.0.1:1", "localhost", tok, 6, &v));
    PANICS(tessera_validator_check(v, tok, 6, &who));
    PANICS(tessera_validator_new_pinned("127.0.0.1:1", "localhost", "00", &v));
    PANICS(tessera_validator_set_timeout(v, 1000));
    PANICS(tessera_validator_set_log(v, NULL, NULL));
    tessera_validator_free(v);
    tessera_local_validator *lv = NULL;
    PANICS(tessera_local_validator_new("/tmp", &lv));
    PANICS(tessera_local_validator_check(lv, tok, 6, &who));
    uint64_t cursor = 0, ids[1];
    size_t nrev = 0;
    PANICS(tessera_local_validator_revocation_cursor(lv, &cursor));
    PANICS(tessera_local_validator_revocations(lv, &cursor, ids, 1, &nrev));
    tessera_local_validator_free(lv);
    tessera_service_validator *sv = NULL;
    PANICS(tessera_service_validator_new("127.0.0.1:9", "localhost", tok, 6, tok, 6, &sv));
    PANICS(tessera_service_validator_new_pinned("127.0.0.1:9", "localhost", "00", tok, 6, &sv));
    PANICS(tessera_service_validator_set_cache(sv, 1, 1));
    PANICS(tessera_service_validator_set_clock_skew_leeway(sv, 1));
    PANICS(tessera_service_validator_status(sv));
    PANICS(tessera_service_validator_check(sv, tok, 6, &who));
    PANICS(tessera_service_validator_check_from(sv, tok, 6, "10.0.0.1", &who));
    PANICS(tessera_service_validator_set_source_limit(sv, 1, 1));
    {
        tessera_service_validator_stats st;
        PANICS(tessera_service_validator_get_stats(sv, &st));
    }
    PANICS(tessera_service_validator_revocations(sv, ids, 1, &nrev));
    tessera_service_validator_free(sv);
    if (sv != NULL) { failures++; fprintf(stderr, "an output was written\n"); }
    if (lv != NULL) { failures++; fprintf(stderr, "an output was written\n"); }
    tessera_device_config_free(cfg);
    tessera_device_client_free(client);
    /* Outputs were never written. */
    if (cfg != NULL || client != NULL || n != 0 || at != 0) { failures++; fprintf(stderr, "an output was written\n"); }
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
