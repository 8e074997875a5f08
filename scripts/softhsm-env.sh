#!/usr/bin/env bash
# Create throw-away SoftHSM2 tokens in a temporary directory and print the environment the
# PKCS#11 tests read. Usage: eval "$(bash scripts/softhsm-env.sh DIR)"; remove DIR afterwards.
set -euo pipefail
dir="$1"
mkdir -p "$dir/tokens"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"
for label in tessera-test tessera-pin tessera-gone tessera-cli; do
    softhsm2-util --init-token --free --label "$label" --pin 1234 --so-pin 4321 >/dev/null
done
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    if [ -e "$m" ]; then module="$m"; break; fi
done
[ -n "$module" ] || { echo "libsofthsm2.so not found" >&2; exit 1; }
echo "export SOFTHSM2_CONF='$dir/softhsm2.conf'"
echo "export TESSERA_TEST_PKCS11_MODULE='$module'"
echo "export TESSERA_TEST_PKCS11_TOKEN=tessera-test"
echo "export TESSERA_TEST_PKCS11_PIN_TOKEN=tessera-pin"
echo "export TESSERA_TEST_PKCS11_GONE_TOKEN=tessera-gone"
echo "export TESSERA_TEST_PKCS11_CLI_TOKEN=tessera-cli"
echo "export TESSERA_TEST_PKCS11_PIN=1234"
