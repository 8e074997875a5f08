/* Measurement helper: provision once and exit (for heap profiling with Valgrind massif).
 *   provision_only TESSERA_ADDR CA_PEM_FILE PT   (use a PT with the automatic policy) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tessera.h"

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 2;
    static char ca[65536];
    size_t ca_len = fread(ca, 1, sizeof ca, f);
    fclose(f);
    tessera_device_config *cfg = NULL;
    tessera_device_client *c = NULL;
    tessera_result r = tessera_device_config_new(argv[1], "localhost", &cfg);
    if (r == TESSERA_OK) r = tessera_device_config_set_ca_pem(cfg, (const uint8_t *)ca, ca_len);
    if (r == TESSERA_OK) r = tessera_device_config_set_pt(cfg, (const uint8_t *)argv[3], strlen(argv[3]));
    if (r == TESSERA_OK) r = tessera_device_client_new(&cfg, &c);
    else tessera_device_config_free(cfg);
    if (r == TESSERA_OK) r = tessera_device_client_ensure_registered(c, 60000);
    printf("%s\n", tessera_result_message(r));
    tessera_device_client_free(c);
    return r == TESSERA_OK ? 0 : 1;
}
