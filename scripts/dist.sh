#!/usr/bin/env bash
# Build what a user installs without a Rust toolchain, stripped, into dist/:
#   tessera_VERSION_ARCH.deb          the server (/usr/bin/tessera), its hardened systemd unit
#                                     and /etc/tessera/tessera.toml, and the Mosquitto plugin
#                                     (/usr/lib/tessera/mosquitto_tessera.so)
#   libtessera-dev_VERSION_ARCH.deb   the C library (static, `platform` shape), tessera.h and
#                                     a pkg-config file (pkg-config --libs tessera)
#   tessera-VERSION-cp310-abi3-manylinux_*.whl   the Python package, for every CPython >= 3.10
#
# Usage: bash scripts/dist.sh [--profile release|dev] [--server-binary PATH]
# The release profile is the default. The test command builds with `--profile dev` to reuse
# the build its tests made (same contents, slower code), and passes the `tessera` binary its
# tests ran with `--server-binary` (built from this checkout with the test build's feature
# set, instead of building it once more).
# Needs: cargo, a C compiler, dpkg-deb, Debian's mosquitto-dev and libmosquitto-dev (the
# plugin's headers), and maturin (installed into dist/.venv if it is not on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
server_binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --server-binary) server_binary="$2"; shift 2 ;;
        *) echo "usage: bash scripts/dist.sh [--profile release|dev] [--server-binary PATH]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) outdir=release ;;
    dev) outdir=debug ;;
    *) echo "profile must be release or dev" >&2; exit 2 ;;
esac

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
multiarch="$(gcc -print-multiarch)"
mkdir -p dist
stage="$(mktemp -d "${TMPDIR:-/tmp}/tessera-dist.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

echo "==> building (profile $profile)"
if [ -z "$server_binary" ]; then
    cargo build --locked --profile "$profile" -p tessera-server --bin tessera
    server_binary="target/$outdir/tessera"
fi
cargo build --locked --profile "$profile" -p tessera-ffi --features platform
make -s -C ffi/mosquitto PROFILE="$outdir" OUT="$stage/mosquitto_tessera.so"

# dpkg-deb wants directories 0755 and files 0644/0755 whatever the umask.
install_file() { install -D -m "$1" "$2" "$3"; }

echo "==> tessera_${version}_${arch}.deb"
pkg="$stage/tessera"
install_file 755 "$server_binary" "$pkg/usr/bin/tessera"
strip --strip-unneeded "$pkg/usr/bin/tessera"
install_file 644 "$stage/mosquitto_tessera.so" "$pkg/usr/lib/tessera/mosquitto_tessera.so"
strip --strip-unneeded "$pkg/usr/lib/tessera/mosquitto_tessera.so"
install_file 644 packaging/tessera.service "$pkg/usr/lib/systemd/system/tessera.service"
install_file 644 packaging/tessera.toml "$pkg/etc/tessera/tessera.toml"
# The manual page and shell completions, generated from the CLI's own definitions.
"$pkg/usr/bin/tessera" man | gzip -9n > "$stage/tessera.1.gz"
install_file 644 "$stage/tessera.1.gz" "$pkg/usr/share/man/man1/tessera.1.gz"
"$pkg/usr/bin/tessera" completions bash > "$stage/tessera.bash"
install_file 644 "$stage/tessera.bash" "$pkg/usr/share/bash-completion/completions/tessera"
"$pkg/usr/bin/tessera" completions zsh > "$stage/_tessera"
install_file 644 "$stage/_tessera" "$pkg/usr/share/zsh/vendor-completions/_tessera"
"$pkg/usr/bin/tessera" completions fish > "$stage/tessera.fish"
install_file 644 "$stage/tessera.fish" "$pkg/usr/share/fish/vendor_completions.d/tessera.fish"
for doc in README.md CHANGELOG.md docs/operations.md docs/upgrading.md docs/mqtt.md; do
    install_file 644 "$doc" "$pkg/usr/share/doc/tessera/$(basename "$doc")"
done
install -d -m 755 "$pkg/DEBIAN"
for script in postinst prerm postrm; do
    install_file 755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
echo /etc/tessera/tessera.toml > "$pkg/DEBIAN/conffiles"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: tessera
Version: $version
Architecture: $arch
Maintainer: Tessera maintainers <tessera@example.invalid>
Section: net
Priority: optional
Depends: libc6 (>= 2.34), adduser
Suggests: mosquitto, postgresql-client, softhsm2
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: provisioning-token server for industrial IoT fleets
 Tessera mints and validates provisioning tokens and registration tokens,
 serves devices and operators over QUIC and HTTPS, and keeps its root key in
 a key file or an HSM (PKCS#11). This package holds the server (tessera), its
 systemd unit and the Mosquitto plugin that authenticates devices by RT.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$pkg" "dist/tessera_${version}_${arch}.deb" >/dev/null

echo "==> libtessera-dev_${version}_${arch}.deb"
dev="$stage/libtessera-dev"
install_file 644 "target/$outdir/libtessera.a" "$dev/usr/lib/$multiarch/libtessera.a"
strip --strip-debug "$dev/usr/lib/$multiarch/libtessera.a"
install_file 644 include/tessera.h "$dev/usr/include/tessera.h"
sed -e "s/@VERSION@/$version/" -e "s/@MULTIARCH@/$multiarch/" packaging/tessera.pc.in > "$stage/tessera.pc"
install_file 644 "$stage/tessera.pc" "$dev/usr/lib/$multiarch/pkgconfig/tessera.pc"
install_file 644 README.md "$dev/usr/share/doc/libtessera-dev/README.md"
install -d -m 755 "$dev/DEBIAN"
cat > "$dev/DEBIAN/control" <<CONTROL
Package: libtessera-dev
Version: $version
Architecture: $arch
Maintainer: Tessera maintainers <tessera@example.invalid>
Section: libdevel
Priority: optional
Installed-Size: $(du -sk "$dev" | cut -f1)
Description: Tessera device library (static) and header
 The C library devices and gateways link to provision with a PT, refresh their
 RT and validate RTs (libtessera.a, tessera.h), with a pkg-config file.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$dev" "dist/libtessera-dev_${version}_${arch}.deb" >/dev/null

echo "==> Python wheel"
maturin_bin="$(command -v maturin || true)"
if [ -z "$maturin_bin" ]; then
    [ -x dist/.venv/bin/maturin ] || {
        python3 -m venv dist/.venv
        dist/.venv/bin/pip install -q --disable-pip-version-check \
            "$(grep -E '^maturin==' bindings/python/requirements-dev.txt)"
    }
    maturin_bin="$PWD/dist/.venv/bin/maturin"
fi
rm -f dist/tessera-*.whl
top="$PWD"
(cd bindings/python && "$maturin_bin" build --quiet --locked --strip --profile "$profile" \
    --out "$top/dist")
ls dist/tessera-*.whl >/dev/null

echo "==> dist/"
ls -l dist/*.deb dist/*.whl | awk '{printf "%8.1f MiB  %s\n", $5 / 1048576, $NF}'
