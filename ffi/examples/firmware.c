/* Example device firmware: provisions with Tessera, then talks MQTT through Eclipse Paho's
 * asynchronous client with username = device id and password = RT. Every (re)connect asks
 * Tessera for the current RT through MQTTAsync_setUpdateConnectOptions, so automatic reconnects
 * after a refresh present the new RT.
 *
 *   firmware TESSERA_ADDR CA_PEM_FILE PT MQTT_URI
 *
 * Prints what a device display would show ("code ABCD-EFGH") and progress lines. Build: see the
 * Makefile beside this file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <MQTTAsync.h>
#include "tessera.h"

struct device {
    tessera_device_client *tessera;
    MQTTAsync mqtt;
    char id[80];
    volatile int connected;
    volatile int published;
    volatile int failed;
};

static void show_code(void *ud, const char *code) { (void)ud; printf("code %s\n", code); fflush(stdout); }
static void log_line(void *ud, const char *line) { (void)ud; fprintf(stderr, "tessera: %s\n", line); }

/* Paho calls this before every connect and reconnect: hand it the current device id and RT. */
static int update_connect(void *context, MQTTAsync_connectData *data) {
    struct device *d = context;
    uint8_t rt[512];
    size_t rt_len = 0;
    if (tessera_device_client_copy_rt(d->tessera, rt, sizeof rt, &rt_len) != TESSERA_OK) return 0;
    tessera_rt_info info;
    tessera_rt_inspect(rt, rt_len, &info);
    char *user = MQTTAsync_malloc(strlen(d->id) + 1);
    void *pwd = MQTTAsync_malloc(rt_len);
    if (!user || !pwd) return 0;
    memcpy(user, d->id, strlen(d->id) + 1);
    memcpy(pwd, rt, rt_len);
    data->username = user;
    data->binarypwd.data = pwd;
    data->binarypwd.len = (int)rt_len;
    printf("connecting with rt generation %u\n", (unsigned)info.generation);
    fflush(stdout);
    return 1;
}

static void on_connected(void *context, char *cause) { (void)cause; ((struct device *)context)->connected = 1; }
static void on_connect_failure(void *context, MQTTAsync_failureData *r) { (void)r; ((struct device *)context)->failed = 1; }
static void on_publish(void *context, MQTTAsync_successData *r) { (void)r; ((struct device *)context)->published++; }
static void on_lost(void *context, char *cause) { (void)cause; ((struct device *)context)->connected = 0; }
static int on_message(void *c, char *t, int l, MQTTAsync_message *m) { (void)c; (void)l; MQTTAsync_freeMessage(&m); MQTTAsync_free(t); return 1; }

static int publish(struct device *d, const char *text) {
    char topic[128];
    snprintf(topic, sizeof topic, "devices/%s/status", d->id);
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    opts.onSuccess = on_publish;
    opts.context = d;
    return MQTTAsync_send(d->mqtt, topic, (int)strlen(text), text, 1, 0, &opts);
}

static int wait_for(volatile int *flag, int want, int seconds) {
    for (int i = 0; i < seconds * 100 && *flag < want; i++) usleep(10000);
    return *flag >= want;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: firmware TESSERA_ADDR CA_PEM PT MQTT_URI\n"); return 2; }
    static struct device d;
    size_t ca_len = 0;
    char *ca = read_file(argv[2], &ca_len);
    if (!ca) return 2;

    /* 1. Tessera: make sure we hold a valid RT (provisioning if needed). */
    tessera_device_config *cfg = NULL;
    tessera_result r = tessera_device_config_new(argv[1], "localhost", &cfg);
    if (r == TESSERA_OK) r = tessera_device_config_set_ca_pem(cfg, (const uint8_t *)ca, ca_len);
    if (r == TESSERA_OK) r = tessera_device_config_set_pt(cfg, (const uint8_t *)argv[3], strlen(argv[3]));
    if (r == TESSERA_OK) r = tessera_device_config_add_attribute(cfg, "model", "example-1");
    if (r == TESSERA_OK) r = tessera_device_config_set_callbacks(cfg, NULL, show_code, NULL, NULL, log_line);
    free(ca);
    if (r == TESSERA_OK) r = tessera_device_client_new(&cfg, &d.tessera);
    else tessera_device_config_free(cfg);
    if (r == TESSERA_OK) r = tessera_device_client_ensure_registered(d.tessera, 120000);
    size_t id_len = 0;
    if (r == TESSERA_OK) r = tessera_device_client_copy_device_id(d.tessera, (uint8_t *)d.id, sizeof d.id - 1, &id_len);
    if (r != TESSERA_OK) { fprintf(stderr, "tessera: %s\n", tessera_result_message(r)); return 1; }
    d.id[id_len] = '\0';
    printf("registered %s\n", d.id);
    fflush(stdout);

    /* 2. MQTT with the RT as password, refreshed on every reconnect. */
    if (MQTTAsync_create(&d.mqtt, argv[4], d.id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTASYNC_SUCCESS) return 1;
    MQTTAsync_setCallbacks(d.mqtt, &d, on_lost, on_message, NULL);
    MQTTAsync_setConnected(d.mqtt, &d, on_connected);
    MQTTAsync_setUpdateConnectOptions(d.mqtt, &d, update_connect);
    MQTTAsync_connectOptions conn = MQTTAsync_connectOptions_initializer;
    conn.keepAliveInterval = 5;
    conn.cleansession = 1;
    conn.automaticReconnect = 1;
    conn.minRetryInterval = 1;
    conn.maxRetryInterval = 2;
    conn.onFailure = on_connect_failure;
    conn.context = &d;
    /* The first connect takes the credentials from the options; reconnects ask update_connect. */
    static uint8_t rt[512];
    size_t rt_len = 0;
    tessera_rt_info info;
    if (tessera_device_client_copy_rt(d.tessera, rt, sizeof rt, &rt_len) != TESSERA_OK) return 1;
    tessera_rt_inspect(rt, rt_len, &info);
    conn.username = d.id;
    conn.binarypwd.data = rt;
    conn.binarypwd.len = (int)rt_len;
    printf("connecting with rt generation %u\n", (unsigned)info.generation);
    fflush(stdout);
    /* A refused first connect is tried again, as reconnects are: a broker whose plugin asks the
     * Tessera server about an RT it has not seen refuses that RT's first CONNECT. */
    for (int attempt = 0; attempt < 10 && !d.connected; attempt++) {
        if (attempt > 0) {
            sleep(1);
            printf("connecting with rt generation %u\n", (unsigned)info.generation);
            fflush(stdout);
        }
        d.failed = 0;
        if (MQTTAsync_connect(d.mqtt, &conn) != MQTTASYNC_SUCCESS) return 1;
        for (int i = 0; i < 2000 && !d.connected && !d.failed; i++) usleep(10000);
    }
    if (!d.connected || publish(&d, "hello") != MQTTASYNC_SUCCESS || !wait_for(&d.published, 1, 20)) {
        fprintf(stderr, "first publish failed\n");
        return 1;
    }
    printf("published 1\n");
    fflush(stdout);

    /* 3. Refresh the RT as a device does at half its life; the next reconnect uses it. */
    r = tessera_device_client_refresh(d.tessera);
    if (r != TESSERA_OK) { fprintf(stderr, "refresh: %s\n", tessera_result_message(r)); return 1; }
    int64_t due = 0;
    tessera_device_client_next_refresh_at(d.tessera, &due);
    printf("refreshed, next refresh due at %lld\n", (long long)due);
    fflush(stdout);

    /* 4. The broker goes away and comes back (the test restarts it): Paho reconnects by itself
     *    and asks update_connect for the current RT. */
    if (!wait_for(&d.published, 1, 1)) return 1;
    for (int i = 0; i < 3000 && d.connected; i++) usleep(10000);
    if (!wait_for(&d.connected, 1, 30)) { fprintf(stderr, "no reconnect\n"); return 1; }
    if (publish(&d, "hello again") != MQTTASYNC_SUCCESS || !wait_for(&d.published, 2, 20)) return 1;
    printf("published 2\n");
    fflush(stdout);

    MQTTAsync_disconnectOptions dis = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(d.mqtt, &dis);
    usleep(100000);
    MQTTAsync_destroy(&d.mqtt);
    tessera_device_client_free(d.tessera);
    return 0;
}
