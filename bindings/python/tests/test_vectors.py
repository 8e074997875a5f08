"""docs/token-vectors.json checked from Python: an independent parser and key derivation in pure
Python (hmac, hashlib, zlib, base64) must agree with the vectors and with the native module."""

import base64
import hashlib
import hmac
import json
import pathlib
import struct
import zlib

import pytest

import tessera

VECTORS = json.loads(
    (pathlib.Path(__file__).resolve().parents[3] / "docs" / "token-vectors.json").read_text()
)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parse(text: str, prefix: str, length: int) -> bytes:
    """The common text form: prefix || base64url(payload || crc32_be(prefix || payload))."""
    assert text.startswith(prefix)
    raw = b64d(text[len(prefix):])
    assert len(raw) == length
    payload, crc = raw[:-4], raw[-4:]
    assert struct.pack(">I", zlib.crc32(prefix.encode() + payload)) == crc
    return payload


def working_key(purpose: str, epoch: int) -> bytes:
    root = bytes.fromhex(VECTORS["root_key"])
    context = b"tessera/v1/" + purpose.encode() + b"/" + struct.pack(">I", epoch)
    return hmac.new(root, context, hashlib.sha256).digest()


def test_key_derivation_matches():
    kd = VECTORS["key_derivation"]
    epoch = kd["epoch"]
    for purpose in ("rt-mac", "pt-verifier", "op-secret", "code", "admin-verifier"):
        assert working_key(purpose, epoch).hex() == kd[purpose]
    assert (b"tessera/v1/rt-mac/" + struct.pack(">I", epoch)).hex() == kd["context_rt_mac_hex"]


def test_rt_layout_mac_and_native_inspection_agree():
    v = VECTORS["rt"]
    payload = parse(v["text"], "tsrt_", 72)
    assert payload.hex() + struct.pack(">I", zlib.crc32(b"tsrt_" + payload)).hex() == v["binary"]
    version, key_id, reg = struct.unpack(">BIQ", payload[:13])
    binding = int.from_bytes(payload[13:16], "big")
    gen, iat, exp = struct.unpack(">IQQ", payload[16:36])
    assert version == 2
    assert (key_id, reg, binding, gen, iat, exp) == (
        v["key_id"],
        v["registration_id"],
        v["binding"],
        v["generation"],
        v["issued_at"],
        v["expires_at"],
    )
    assert payload[:36].hex() == v["mac_input"]
    mac = hmac.new(working_key("rt-mac", key_id), payload[:36], hashlib.sha256).digest()
    assert mac == payload[36:68]

    claims = tessera.inspect_rt(v["text"])
    assert (claims.key_id, claims.registration_id, claims.generation) == (key_id, reg, gen)
    assert claims.binding == binding
    assert (claims.issued_at, claims.expires_at) == (iat, exp)
    assert tessera.inspect_rt(v["text"].encode()) == claims


def test_pt_layout_verifier_and_id():
    v = VECTORS["pt"]
    payload = parse(v["text"], "tspt_", 57)
    version, epoch = struct.unpack(">BI", payload[:5])
    tag, secret = payload[5:21], payload[21:53]
    assert version == 1 and epoch == v["epoch"]
    assert secret.hex() == v["secret"]
    verifier = hmac.new(working_key("pt-verifier", epoch), secret, hashlib.sha256).digest()
    assert verifier.hex() == v["verifier"]
    assert tag == verifier[:16]
    pt_id = "pt_" + base64.urlsafe_b64encode(payload[1:21]).decode().rstrip("=")
    assert pt_id == v["id"] == tessera.check_pt(v["text"])


def test_operation_secret_and_verification_code():
    v = VECTORS["operation"]
    op_id = b64d(v["id"][len("op_"):])
    assert op_id.hex() == v["id_bytes"]
    epoch = VECTORS["key_derivation"]["epoch"]
    secret = hmac.new(working_key("op-secret", epoch), op_id, hashlib.sha256).digest()
    assert parse(v["secret_text"], "tsos_", 36) == secret
    bits = int.from_bytes(
        hmac.new(working_key("code", epoch), op_id, hashlib.sha256).digest()[:5], "big"
    )
    chars = "".join(CROCKFORD[(bits >> (35 - 5 * i)) & 31] for i in range(8))
    assert f"{chars[:4]}-{chars[4:]}" == v["verification_code"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: f"{c['kind']}-{c['error']}")
def test_invalid_vectors_raise_the_documented_error(case):
    check = tessera.inspect_rt if case["kind"] == "rt" else tessera.check_pt
    want = case["error"]
    if want == "unauthenticated":
        # Format-valid: only the MAC check (below, with the vector root) refuses it.
        check(case["text"])
        return
    with pytest.raises(tessera.MalformedToken) as e:
        check(case["text"])
    assert e.value.code == 6
    allowed = {"bad_encoding_or_checksum": {"bad_encoding", "bad_checksum"}}.get(want, {want})
    assert e.value.detail in allowed


def test_vectors_validate_under_the_vector_root(tmp_path):
    clock = tessera.ManualClock(1_800_000_100)
    engine = tessera.Engine(
        tmp_path, clock=clock, root_key=bytes.fromhex(VECTORS["root_key"])
    )
    # The MAC verifies; registration 1234 does not exist here, so it is refused as revoked.
    with pytest.raises(tessera.Revoked):
        engine.validate(VECTORS["rt"]["text"])
    forged = next(c for c in VECTORS["invalid"] if c["error"] == "unauthenticated")
    with pytest.raises(tessera.Unauthenticated):
        engine.validate(forged["text"])
    other = tessera.Engine(clock=clock, root_key=bytes(range(32)))
    with pytest.raises(tessera.Unauthenticated):
        other.validate(VECTORS["rt"]["text"])
