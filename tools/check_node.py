#!/usr/bin/env python3
"""Checks a running gridledger node from the outside, with the Python standard library
only: the node's API must agree with what its raw blocks imply.

    python3 tools/check_node.py http://127.0.0.1:5004 [--proofs N] [--registry FILE]

1. Fetches the main chain as raw bytes (`GET /blocks?from=&limit=` with `Accept:
   application/octet-stream`) and verifies every rule of docs/book/src/FORMAT.md with
   verify_export.py (genesis, links, proof of work, times, Merkle roots, signatures,
   records, no record twice).
2. `GET /chain` (the study's view) must render exactly those blocks and records.
3. `GET /readings` for every relay over the chain's minutes must give exactly the
   records the raw blocks hold, value for value.
4. `GET /readings/{relay}/{minute}/proof` for up to N records (default all): the header
   must be the verified block's header, the record its record, and the RFC 6962 audit
   path must climb from the record to the header's Merkle root; a reading the proof says
   is signed by its relay must carry a signature that verifies (Ed25519, FORMAT.md section
   12) under the key the proof names.

With `--registry` (the network's relay registry, FORMAT.md section 12) the relay-signature
rule is checked on the raw blocks too, each reading's `signed` must be what the registry
implies, and a proof must name the registry's key (not one the node picked). Without it the
node's word on who registered what is taken only as far as the signatures verify.

Blocks mined while the check runs are ignored: it pins the height first. Exit 0 and
`ok: ...` if all agree; 1 and `disagree: ...` (or `invalid: ...`) otherwise; 2 if the
node cannot be reached.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_export as vx  # noqa: E402  (next to this file)


class Disagree(Exception):
    pass


def get(base, path, raw=False):
    req = urllib.request.Request(
        base + path, headers={"accept": "application/octet-stream" if raw else "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return body if raw else json.loads(body)


def raw_chain(base, height):
    """Main-chain blocks 0..=height as raw bytes, in pages of at most 500."""
    raws = []
    while len(raws) <= height:
        limit = min(500, height + 1 - len(raws))
        body = get(base, f"/blocks?from={len(raws)}&limit={limit}", raw=True)
        r = vx.Reader(body, "block list")
        count = r.varint(64)
        if count == 0:
            raise Disagree(f"/blocks from {len(raws)} is empty below height {height}")
        for _ in range(count):
            raws.append(r.take(r.varint(64)))
        if not r.done():
            raise Disagree("/blocks: bytes after the last block")
    return raws[: height + 1]


def node_hash(left, right):
    return vx.sha256(b"\x01" + left + right)


def verify_path(record, index, size, path, root):
    """RFC 9162 section 2.1.3.2: verifying an inclusion proof."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = vx.sha256(b"\x00" + record)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def same_numbers(a, b):
    """JSON values equal, numbers compared as numbers (1.5 == 1.500)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return a == b


def expected_signed(registry, relay, minute, signature):
    """What `signed` must say of a reading, or None if only the node knows (no registry)."""
    if registry is None:
        return None
    if vx.registered_key(registry, relay, minute) is not None:
        return "relay"
    return "unregistered" if signature else "unsigned"


def check(base, max_proofs, registry=None):
    status = get(base, "/status")
    name, bits, height = status["network"], status["difficulty_bits"], status["height"]
    raws = raw_chain(base, height)
    rendered, n_records, _ = vx.verify_blocks(name, bits, raws, int(time.time() * 1000), registry)

    # /chain: the same blocks (the node may have grown since: compare the pinned part).
    chain = get(base, "/chain")
    if chain["length"] != len(chain["chain"]) or chain["length"] < height + 1:
        raise Disagree(f"/chain length {chain['length']} for height {height}")
    for mine, theirs in zip(rendered, chain["chain"]):
        if not same_numbers(mine, theirs):
            raise Disagree(f"/chain block {mine['height']} differs from its raw bytes")

    # /readings: every record, per relay, over the chain's minutes.
    by_relay = {}
    for b in rendered:
        for r in b["records"]:
            by_relay.setdefault(r["relay"], []).append((b, r))
    n_readings = 0
    for relay, recs in sorted(by_relay.items()):
        minutes = sorted(r["minute"] for _, r in recs)
        expected = {r["minute"]: (b, r) for b, r in recs}
        lo = minutes[0]
        while lo <= minutes[-1]:
            hi = min(lo + 7 * 1440 - 1, minutes[-1])
            got = get(base, f"/readings?relay={relay}&from={lo}&to={hi}")
            seen = set()
            for reading in got["readings"]:
                m = reading["minute"]
                if m not in expected:
                    if m > minutes[-1] or reading["height"] > height:
                        continue
                    raise Disagree(f"/readings relay {relay}: minute {m} is not on the chain")
                b, r = expected[m]
                # `disputed` is the node's own witness opinion, not in the block: a bool.
                reading = dict(reading)
                if not isinstance(reading.pop("disputed", None), bool):
                    raise Disagree(f"/readings relay {relay} minute {m}: no boolean 'disputed'")
                signed = reading.pop("signed", None)
                want_signed = expected_signed(registry, relay, m, r["signature"])
                if signed not in ("relay", "unregistered", "unsigned") or (
                    want_signed is not None and signed != want_signed
                ) or (signed != "unsigned" and not r["signature"]) or (
                    signed == "unsigned" and r["signature"] and registry is not None
                ):
                    raise Disagree(f"/readings relay {relay} minute {m}: 'signed' is {signed!r}")
                want = {
                    "height": b["height"], "block_id": b["id"], "relay": relay, "minute": m,
                    "minute_utc": r["minute_utc"], "faults": r["faults"], "samples": r["samples"],
                    "seconds": r["seconds"],
                }
                if not same_numbers(want, reading):
                    raise Disagree(f"/readings relay {relay} minute {m} differs from block {b['height']}")
                seen.add(m)
            missing = [m for m in minutes if lo <= m <= hi and m not in seen]
            if missing:
                raise Disagree(f"/readings relay {relay}: minutes {missing[:5]} missing")
            n_readings += len(seen)
            lo = hi + 1

    # Proofs.
    n_proofs = n_signed = 0
    for b in rendered:
        for r in b["records"]:
            if n_proofs >= max_proofs:
                break
            p = get(base, f"/readings/{r['relay']}/{r['minute']}/proof")
            header = bytes.fromhex(p["header"])
            record = bytes.fromhex(p["record"])
            if header != bytes.fromhex(b["raw"])[:119] or p["block_id"] != b["id"]:
                raise Disagree(f"proof of {r['relay']}@{r['minute']}: not the header of block {b['height']}")
            if vx.sha256(header).hex() != p["block_id"] or p["height"] != b["height"]:
                raise Disagree(f"proof of {r['relay']}@{r['minute']}: id or height wrong")
            if record.hex() != r["raw"]:
                raise Disagree(f"proof of {r['relay']}@{r['minute']}: not the record on the chain")
            path = [bytes.fromhex(h) for h in p["path"]]
            if not verify_path(record, p["index"], p["size"], path, header[38:70]):
                raise Disagree(f"proof of {r['relay']}@{r['minute']}: the audit path does not reach the root")
            rs = p.get("relay_signature") or {}
            want_signed = expected_signed(registry, r["relay"], r["minute"], r["signature"])
            if want_signed is not None and rs.get("signed") != want_signed:
                raise Disagree(f"proof of {r['relay']}@{r['minute']}: signed is {rs.get('signed')!r}, the registry says {want_signed}")
            if rs.get("signed") == "relay":
                key = bytes.fromhex(rs.get("registered_key") or "")
                if registry is not None and key != vx.registered_key(registry, r["relay"], r["minute"]):
                    raise Disagree(f"proof of {r['relay']}@{r['minute']}: names a key the registry does not")
                body, sig = record[:-64], record[-64:]
                if not r["signature"] or not vx.ed25519_verify_zip215(key, vx.RECORD_CONTEXT + body, sig):
                    raise Disagree(f"proof of {r['relay']}@{r['minute']}: the relay's signature does not verify under the key it names")
                n_signed += 1
            n_proofs += 1
    return height, n_records, n_readings, n_proofs, n_signed


def main():
    args = sys.argv[1:]
    max_proofs = 1 << 62
    if "--proofs" in args:
        i = args.index("--proofs")
        try:
            max_proofs = int(args[i + 1])
        except (IndexError, ValueError):
            print("--proofs needs a number", file=sys.stderr)
            return 2
        del args[i : i + 2]
    registry = None
    if "--registry" in args:
        i = args.index("--registry")
        try:
            with open(args[i + 1], encoding="utf-8") as f:
                registry = vx.parse_registry(f.read())
        except (IndexError, OSError, vx.Invalid, ValueError) as e:
            print(f"--registry: {e}", file=sys.stderr)
            return 2
        del args[i : i + 2]
    if len(args) != 1:
        print("usage: check_node.py http://HOST:PORT [--proofs N] [--registry FILE]", file=sys.stderr)
        return 2
    base = args[0].rstrip("/")
    try:
        height, records, readings, proofs, signed = check(base, max_proofs, registry)
    except (urllib.error.URLError, OSError) as e:
        print(f"cannot reach {base}: {e}")
        return 2
    except Disagree as e:
        print(f"disagree: {e}")
        return 1
    except (vx.Invalid, ValueError, KeyError, TypeError, IndexError) as e:
        print(f"invalid: {e}")
        return 1
    print(
        f"ok: height {height}, {records} records verified from raw blocks; /chain agrees; "
        f"{readings} readings agree; {proofs} proofs verified, {signed} of them signed by their relay"
        + ("" if registry is not None else " (no --registry: who is registered is the node's word)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
