#!/usr/bin/env python3
"""An independent verifier for `gridledger export --format json`, written from
docs/book/src/FORMAT.md alone, with the Python standard library only (ed25519 included, after
RFC 8032 section 6 with the ZIP 215 rules).

    python3 tools/verify_export.py [--registry REGISTRY] chain.json
    python3 tools/verify_export.py --proof proof.json --members members.json [chain.json]

It re-derives everything from the `raw` fields: genesis, ids, links, heights, proof of work,
times, Merkle roots, records, signatures; then it renders the export file that those raw
bytes imply and compares it with the given file byte for byte, so that any change to any
byte of the file is caught. Exit 0 and `ok: ...` if the chain is valid, 1 and
`invalid: ...` otherwise.

With `--registry` (the network's relay registry file, FORMAT.md section 12: `RELAY_ID
PUBLIC_KEY_HEX [FROM_MINUTE]` lines) it checks the relay-signature rule too: every record of
a relay the registry names for the record's minute carries that key's valid signature. The
keys come from the registry given, never from the export. Without it, signatures of records
are not judged (and `ok` says how many records carry one).

With `--proof` (a node's `GET /checkpoint/proof` answer) and `--members` (its
`GET /members` answer, or the same keys from the consortium's own records), it checks
FORMAT.md section 11 instead: the checkpoint note carries valid Ed25519 signatures of a
quorum of the members, and the block's RFC 6962 inclusion proof leads to the checkpoint's
root (RFC 9162 section 2.1.3.2). Given an export too, the export's block at that height is
that block, and the tree over the export's block ids up to the checkpoint's size has the
checkpoint's root: the exported chain is the final one.
"""

import hashlib
import json
import sys
import time

# --- ed25519 (RFC 8032, section 6; ZIP 215 rules), verification only ----------------------

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    out = IDENTITY
    while s > 0:
        if s & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        s >>= 1
    return out


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return 0  # x = 0 with the sign bit set reads as 0, as curve25519-dalek does
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(s):
    """Any encoding of a point, canonical or not (y reduced mod p), as ZIP 215 reads R."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y = (y & ((1 << 255) - 1)) % P
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _compress(pt):
    zinv = pow(pt[2], P - 2, P)
    x, y = pt[0] * zinv % P, pt[1] * zinv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


_GY = 4 * pow(5, P - 2, P) % P
BASE = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % P)


def ed25519_verify_zip215(public, message, signature):
    """The chain's signature rule (docs/book/src/FORMAT.md section 5): the key is a canonically
    encoded point of large order; s is canonical; R is any point encoding; and the
    cofactored equation [8][s]B = [8]R + [8][k]A holds (ZIP 215)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    if a is None or _compress(a) != public or _equal(_mul(8, a), IDENTITY):
        return False
    r = _decompress(signature[:32])
    if r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= Q:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % Q
    neg_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
    neg_r = ((P - r[0]) % P, r[1], r[2], (P - r[3]) % P)
    return _equal(_mul(8, _add(_add(_mul(s, BASE), _mul(k, neg_a)), neg_r)), IDENTITY)


# --- FORMAT.md ----------------------------------------------------------------------------


class Invalid(Exception):
    pass


def sha256(b):
    return hashlib.sha256(b).digest()


class Reader:
    def __init__(self, data, what):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Invalid(f"{self.what}: bytes end early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self, max_bits):
        value, shift, count = 0, 0, 0
        while True:
            (b,) = self.take(1)
            count += 1
            value |= (b & 0x7F) << shift
            if b & 0x80 == 0:
                if count > 1 and b == 0:
                    raise Invalid(f"{self.what}: non-minimal varint")
                break
            shift += 7
            if shift >= 70:
                raise Invalid(f"{self.what}: varint too long")
        if value >= 1 << max_bits:
            raise Invalid(f"{self.what}: varint out of range")
        return value

    def zigzag(self, bits):
        v = self.varint(bits)
        return (v >> 1) if v & 1 == 0 else -((v + 1) >> 1)

    def done(self):
        return self.pos == len(self.data)


def merkle_root(leaves):
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + merkle_root(leaves[:k]) + merkle_root(leaves[k:]))


# Field order, names in the export, and the range of each quantity's type.
QUANTITIES = [
    ("Vab_kV", 0, 2**32 - 1), ("Vbc_kV", 0, 2**32 - 1), ("Vca_kV", 0, 2**32 - 1),
    ("Ia_A", 0, 2**32 - 1), ("Ib_A", 0, 2**32 - 1), ("Ic_A", 0, 2**32 - 1),
    ("f_Hz", 0, 2**16 - 1), ("PF", -1000, 1000),
    ("P_kW", -(2**31), 2**31 - 1), ("Q_kvar", -(2**31), 2**31 - 1),
]


def decode_record(raw):
    r = Reader(raw, "record")
    relay, minute = r.varint(32), r.varint(32)
    faults, flags = r.varint(16), r.varint(16)
    if flags & ~0x3F01:
        raise Invalid("record: unknown flag bits")
    count = r.varint(64)
    if not 1 <= count <= 6:
        raise Invalid(f"record: {count} samples")
    missing = (flags >> 8) & 0x3F
    if missing and (count + bin(missing).count("1") > 6 or missing >> (count + bin(missing).count("1"))):
        raise Invalid("record: the missing-sample mask does not fit its samples")
    first = [r.varint(32) for _ in range(6)] + [r.varint(16), r.zigzag(16), r.zigzag(32), r.zigzag(32)]
    samples = [first]
    for _ in range(count - 1):
        delta = [r.zigzag(64) for _ in range(10)]
        samples.append([a + b for a, b in zip(samples[-1], delta)])
    for s in samples:
        for v, (name, lo, hi) in zip(s, QUANTITIES):
            if not lo <= v <= hi:
                raise Invalid(f"record: {name} out of range")
    # Then nothing, or exactly the relay's 64-byte signature (section 6).
    body, rest = raw[:r.pos], raw[r.pos:]
    if len(rest) not in (0, 64):
        raise Invalid("record: bytes after the last sample")
    return relay, minute, faults, flags, samples, body, (rest or None)


RECORD_CONTEXT = b"gridledger record v1\n"


def parse_minute(s):
    if s.isdigit():
        return int(s)
    import calendar
    t = time.strptime(s, "%Y-%m-%dT%H:%MZ")
    return calendar.timegm(t) // 60


def parse_registry(text):
    """relay -> sorted [(from_minute, key)] (FORMAT.md section 12)."""
    reg = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        f = line.split()
        if len(f) not in (2, 3) or len(f[1]) != 64:
            raise Invalid(f"registry line {n}: expected RELAY_ID PUBLIC_KEY_HEX [FROM_MINUTE]")
        key = bytes.fromhex(f[1])
        a = _decompress(key)
        if a is None or _compress(a) != key or _equal(_mul(8, a), IDENTITY):
            raise Invalid(f"registry line {n}: the key is not a canonical point of large order")
        start = parse_minute(f[2]) if len(f) == 3 else 0
        entries = reg.setdefault(int(f[0]), [])
        if any(m == start for m, _ in entries):
            raise Invalid(f"registry line {n}: relay {f[0]} has two entries from {start}")
        entries.append((start, key))
        entries.sort()
    return reg


def registered_key(registry, relay, minute):
    key = None
    for start, k in registry.get(relay, []):
        if start <= minute:
            key = k
    return key


def sample_seconds(flags, count):
    """Second of the minute of each held sample: slot i of n at i * 60 // n, missing skipped."""
    missing = (flags >> 8) & 0x3F
    n = count + bin(missing).count("1")
    return [i * 60 // n for i in range(n) if not (missing >> i) & 1]


def milli(v):
    sign = "-" if v < 0 else ""
    return float(f"{sign}{abs(v) // 1000}.{abs(v) % 1000:03d}")


def minute_utc(minute):
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(minute * 60))


def genesis_raw(name, bits):
    prev = sha256(b"gridledger genesis v1\x00" + name.encode() + bytes([0, bits]))
    header = (
        (1).to_bytes(2, "big") + (0).to_bytes(4, "big") + prev + sha256(b"")
        + (0).to_bytes(8, "big") + bytes([bits]) + bytes(32) + (0).to_bytes(8, "big")
    )
    return header + bytes(64) + b"\x00"


def parse_block(raw):
    r = Reader(raw, "block")
    header = r.take(119)
    sig = r.take(64)
    records = [r.take(r.varint(64)) for _ in range(r.varint(64))]
    if not r.done():
        raise Invalid("block: bytes after the last record")
    return header, sig, records


def verify_blocks(name, bits, raws, now_ms, registry=None):
    """Checks a main chain given as raw blocks (genesis first) against every rule of
    docs/book/src/FORMAT.md (with `registry`, the relay-signature rule of section 12 too); returns
    each block rendered as the export renders it, the number of records, and the number
    of records checked against a registered relay key."""
    if not raws or raws[0] != genesis_raw(name, bits):
        raise Invalid("the first block is not this network's genesis")
    rendered, times, seen, prev_id, n_records, n_relay = [], [], set(), None, 0, 0
    for height, raw in enumerate(raws):
        if len(raw) > 1 << 20:
            raise Invalid(f"height {height}: block over 1 MiB")
        header, sig, records = parse_block(raw)
        if len(records) > 4096:
            raise Invalid(f"height {height}: too many records")
        bid = sha256(header)
        version = int.from_bytes(header[0:2], "big")
        h = int.from_bytes(header[2:6], "big")
        prev, root = header[6:38], header[38:70]
        t = int.from_bytes(header[70:78], "big")
        hbits, miner, nonce = header[78], header[79:111], int.from_bytes(header[111:119], "big")
        if version != 1 or h != height or hbits != bits:
            raise Invalid(f"height {height}: bad version, height or difficulty")
        if height > 0:
            if prev != prev_id:
                raise Invalid(f"height {height}: does not link to the block below")
            if int.from_bytes(bid, "big") >> (256 - bits) != 0:
                raise Invalid(f"height {height}: not enough proof of work")
            window = sorted(times[-11:])
            if t < window[len(window) // 2] or t > now_ms + 120_000:
                raise Invalid(f"height {height}: time out of bounds")
            if not records or merkle_root(records) != root:
                raise Invalid(f"height {height}: Merkle root does not match")
            if not ed25519_verify_zip215(miner, bid, sig):
                raise Invalid(f"height {height}: bad signature")
        out_records = []
        for raw_rec in records:
            relay, minute, faults, flags, samples, body, rsig = decode_record(raw_rec)
            key = registered_key(registry or {}, relay, minute)
            if key is not None:
                if rsig is None:
                    raise Invalid(f"height {height}: record for relay {relay} at {minute} is unsigned, but the registry names the relay's key")
                if not ed25519_verify_zip215(key, RECORD_CONTEXT + body, rsig):
                    raise Invalid(f"height {height}: record for relay {relay} at {minute} is not signed by the relay's registered key")
                n_relay += 1
            if not flags & 1:
                raise Invalid(f"height {height}: record without a set clock")
            if (minute + 1) * 60_000 > t:
                raise Invalid(f"height {height}: record for relay {relay} at {minute} is from the future")
            if (relay, minute) in seen:
                raise Invalid(f"height {height}: duplicate record for relay {relay} at {minute}")
            seen.add((relay, minute))
            out_records.append({
                "relay": relay, "minute": minute, "minute_utc": minute_utc(minute),
                "faults": faults, "clock_set": bool(flags & 1), "raw": raw_rec.hex(),
                "samples": [{q[0]: milli(v) for q, v in zip(QUANTITIES, s)} for s in samples],
                "seconds": sample_seconds(flags, len(samples)),
                "signature": rsig.hex() if rsig else None,
            })
        n_records += len(records)
        times.append(t)
        prev_id = bid
        rendered.append({
            "height": height, "id": bid.hex(), "prev": prev.hex(), "merkle_root": root.hex(),
            "time_ms": t, "bits": hbits, "miner": miner.hex(), "nonce": nonce,
            "signature": sig.hex(), "raw": raw.hex(), "records": out_records,
        })
    return rendered, n_records, n_relay


def verify(text, now_ms, registry=None):
    doc = json.loads(text)
    name, bits = doc["network"], doc["difficulty_bits"]
    blocks = doc["blocks"]
    rendered, n_records, n_relay = verify_blocks(
        name, bits, [bytes.fromhex(b["raw"]) for b in blocks], now_ms, registry)
    canonical = (
        '{"network":' + json.dumps(name, ensure_ascii=False)
        + f',"difficulty_bits":{bits},"height":{len(blocks) - 1},"blocks":['
        + ",\n".join(json.dumps(b, ensure_ascii=False, separators=(",", ":")) for b in rendered)
        + "]}\n"
    )
    if canonical != text:
        raise Invalid("the file differs from what its raw blocks imply")
    return len(blocks) - 1, n_records, n_relay


# --- checkpoints (FORMAT.md section 11) ---------------------------------------------------

def b64(s):
    import base64
    return base64.b64decode(s, validate=True)


def parse_note(text):
    """A C2SP signed note: (text, [(name, key_id, signature)])."""
    cut = text.rfind("\n\n")
    if cut < 0 or not text.endswith("\n"):
        raise Invalid("checkpoint: not a signed note")
    body, sig_lines = text[:cut + 1], text[cut + 2:-1].split("\n")
    sigs = []
    for line in sig_lines:
        if not line.startswith("\u2014 "):
            raise Invalid("checkpoint: a signature line does not start with an em dash")
        name, _, sig = line[2:].partition(" ")
        raw = b64(sig)
        if len(raw) < 5:
            raise Invalid("checkpoint: a signature is too short")
        sigs.append((name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return body, sigs


def key_id(name, key):
    return int.from_bytes(sha256(name.encode() + b"\n\x01" + key)[:4], "big")


def tlog_root(ids):
    """RFC 6962 root over block ids (the leaves are the 32 id bytes)."""
    return merkle_root(ids)


def verify_inclusion(leaf, index, size, path, root):
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = sha256(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_proof(proof, members, export_text):
    origin, quorum = members["origin"], members["quorum"]
    keys = [bytes.fromhex(m["key"]) for m in members["members"]]
    note = proof["checkpoint"]
    body, sigs = parse_note(note)
    lines = body[:-1].split("\n")
    if len(lines) != 3 or lines[0] != origin:
        raise Invalid(f"checkpoint: not a checkpoint of {origin}")
    size, root = int(lines[1]), b64(lines[2])
    if str(size) != lines[1] or len(root) != 32:
        raise Invalid("checkpoint: malformed size or root")
    signed = set()
    for name, kid, sig in sigs:
        for key in keys:
            member = origin + "/" + key[:8].hex()
            if name == member and kid == key_id(member, key):
                if len(sig) != 64 or not ed25519_verify_zip215(key, body.encode(), sig):
                    raise Invalid(f"checkpoint: the signature of {name} does not verify")
                signed.add(key)
    if len(signed) < quorum:
        raise Invalid(f"checkpoint: {len(signed)} member signatures, the quorum is {quorum}")
    if proof["size"] != size or b64(proof["root"]) != root:
        raise Invalid("proof: another checkpoint than the note's")
    block, index = bytes.fromhex(proof["block"]), proof["index"]
    path = [b64(p) for p in proof["path"]]
    if not verify_inclusion(block, index, size, path, root):
        raise Invalid(f"proof: block {index} is not in the checkpoint")
    if export_text is not None:
        doc = json.loads(export_text)
        verify(export_text, int(time.time() * 1000))
        blocks = doc["blocks"]
        if len(blocks) < size:
            raise Invalid(f"export: {len(blocks)} blocks, the checkpoint covers {size}")
        ids = [sha256(bytes.fromhex(b["raw"])[:119]) for b in blocks[:size]]
        if ids[index] != block:
            raise Invalid(f"export: block {index} is another block than the proof's")
        if tlog_root(ids) != root:
            raise Invalid("export: its chain is not the checkpoint's (another root)")
    return index, size, len(signed), len(keys), quorum


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--proof":
        args = sys.argv[1:]
        try:
            if len(args) not in (4, 5) or args[2] != "--members":
                print("usage: verify_export.py --proof PROOF.json --members MEMBERS.json [EXPORT.json]", file=sys.stderr)
                return 2
            with open(args[1], encoding="utf-8") as f:
                proof = json.load(f)
            with open(args[3], encoding="utf-8") as f:
                members = json.load(f)
            export_text = None
            if len(args) == 5:
                with open(args[4], encoding="utf-8") as f:
                    export_text = f.read()
            index, size, signed, n, quorum = verify_proof(proof, members, export_text)
        except (Invalid, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
            print(f"invalid: {e}")
            return 1
        print(f"ok: block {index} is in the final checkpoint of size {size}, cosigned by {signed} of {n} members (quorum {quorum})")
        return 0
    args = sys.argv[1:]
    registry_path = None
    if len(args) == 3 and args[0] == "--registry":
        registry_path, args = args[1], args[2:]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: verify_export.py [--registry REGISTRY] EXPORT.json", file=sys.stderr)
        return 2
    try:
        registry = None
        if registry_path is not None:
            with open(registry_path, encoding="utf-8") as f:
                registry = parse_registry(f.read())
        with open(args[0], encoding="utf-8") as f:
            text = f.read()
        height, records, relay_signed = verify(text, int(time.time() * 1000), registry)
    except (Invalid, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        print(f"invalid: {e}")
        return 1
    if registry is None:
        print(f"ok: height {height}, {records} records (relay signatures not checked: no --registry)")
    else:
        print(f"ok: height {height}, {records} records, {relay_signed} signed by their registered relay")
    return 0


if __name__ == "__main__":
    sys.exit(main())
