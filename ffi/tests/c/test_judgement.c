/* The RT judgement table (tessera_tests::judgement), run against the service validator through
 * the C ABI. ffi/tests/judgement.rs starts a server, prepares each case and writes one RT per
 * line on stdin; for each, this program prints the code of the first answer that is not
 * TESSERA_PENDING (the server's, by way of the validator) and the code of the next check (the
 * cache's judgement of the same RT). Arguments: ADMIN_ADDR CA_FILE TOKEN_FILE. */
#define _POSIX_C_SOURCE 200809L
#include <tessera.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void pause_ms(long ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

/* The whole of a small file, NUL-terminated; *len without the NUL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_judgement ADMIN_ADDR CA_FILE TOKEN_FILE < rts\n");
        return 2;
    }
    size_t ca_len = 0, tok_len = 0;
    char *ca = slurp(argv[2], &ca_len);
    char *tok = slurp(argv[3], &tok_len);
    if (!ca || !tok) {
        fprintf(stderr, "cannot read the CA or the token file\n");
        return 2;
    }
    while (tok_len > 0 && (tok[tok_len - 1] == '\n' || tok[tok_len - 1] == '\r')) tok[--tok_len] = 0;

    tessera_service_validator *sv = NULL;
    tessera_result r = tessera_service_validator_new(argv[1], "localhost", (const uint8_t *)ca, ca_len,
                                                     (const uint8_t *)tok, tok_len, &sv);
    free(ca);
    free(tok);
    if (r != TESSERA_OK) {
        fprintf(stderr, "tessera_service_validator_new: %s\n", tessera_result_message(r));
        return 1;
    }
    if (tessera_service_validator_set_clock_skew_leeway(sv, 60) != TESSERA_OK) return 1;
    /* Following the server first: before that, no RT is let in. */
    for (int i = 0; i < 2000 && tessera_service_validator_status(sv) != TESSERA_OK; i++) pause_ms(10);
    if (tessera_service_validator_status(sv) != TESSERA_OK) {
        fprintf(stderr, "the validator does not follow the server\n");
        tessera_service_validator_free(sv);
        return 1;
    }

    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        if (len == 0) break;
        tessera_rt_identity who;
        tessera_result first = TESSERA_PENDING;
        for (int i = 0; i < 2000 && first == TESSERA_PENDING; i++) {
            first = tessera_service_validator_check(sv, (const uint8_t *)line, len, &who);
            if (first == TESSERA_PENDING) pause_ms(5);
        }
        tessera_result cached = tessera_service_validator_check(sv, (const uint8_t *)line, len, &who);
        printf("%u %u\n", (unsigned)first, (unsigned)cached);
        fflush(stdout);
    }
    tessera_service_validator_free(sv);
    return 0;
}
