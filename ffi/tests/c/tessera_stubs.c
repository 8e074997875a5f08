/* Measurement helper: stand-ins for every libtessera function the example firmware calls, so
 * the firmware can be linked without the library to measure how much code the library adds. */
#include "tessera.h"

tessera_result tessera_device_config_new(const char *a, const char *n, tessera_device_config **o) { (void)a; (void)n; (void)o; return TESSERA_CONFIG; }
tessera_result tessera_device_config_set_ca_pem(tessera_device_config *c, const uint8_t *p, size_t l) { (void)c; (void)p; (void)l; return TESSERA_CONFIG; }
tessera_result tessera_device_config_set_pt(tessera_device_config *c, const uint8_t *p, size_t l) { (void)c; (void)p; (void)l; return TESSERA_CONFIG; }
tessera_result tessera_device_config_add_attribute(tessera_device_config *c, const char *k, const char *v) { (void)c; (void)k; (void)v; return TESSERA_CONFIG; }
tessera_result tessera_device_config_set_callbacks(tessera_device_config *c, void *u, tessera_show_code_cb s, tessera_load_cb l, tessera_save_cb v, tessera_log_cb g) { (void)c; (void)u; (void)s; (void)l; (void)v; (void)g; return TESSERA_CONFIG; }
void tessera_device_config_free(tessera_device_config *c) { (void)c; }
tessera_result tessera_device_client_new(tessera_device_config **c, tessera_device_client **o) { (void)c; (void)o; return TESSERA_CONFIG; }
tessera_result tessera_device_client_ensure_registered(tessera_device_client *c, uint32_t t) { (void)c; (void)t; return TESSERA_CONFIG; }
tessera_result tessera_device_client_refresh(tessera_device_client *c) { (void)c; return TESSERA_CONFIG; }
tessera_result tessera_device_client_copy_rt(tessera_device_client *c, uint8_t *b, size_t n, size_t *w) { (void)c; (void)b; (void)n; (void)w; return TESSERA_CONFIG; }
tessera_result tessera_device_client_copy_device_id(tessera_device_client *c, uint8_t *b, size_t n, size_t *w) { (void)c; (void)b; (void)n; (void)w; return TESSERA_CONFIG; }
tessera_result tessera_device_client_next_refresh_at(tessera_device_client *c, int64_t *o) { (void)c; (void)o; return TESSERA_CONFIG; }
void tessera_device_client_free(tessera_device_client *c) { (void)c; }
tessera_result tessera_rt_inspect(const uint8_t *t, size_t l, tessera_rt_info *o) { (void)t; (void)l; (void)o; return TESSERA_CONFIG; }
const char *tessera_result_message(uint32_t code) { (void)code; return ""; }
