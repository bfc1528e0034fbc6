#!/usr/bin/env python3
"""Reads a relay's last signed minute record over Modbus TCP and checks its signature.

An outside check of docs/book/src/registers.md and docs/book/src/FORMAT.md section 12, written from those
pages alone: pymodbus reads the registers, the record's canonical bytes are rebuilt here,
and PyNaCl (libsodium) verifies the Ed25519 signature. Nothing of gridledger's code runs.

    python3 tools/relay_signature.py HOST:PORT [--unit N] [--key HEX]

--key is the key the relay registry names; without it the key the relay serves is used
(and the output says so: a key read from the device proves nothing by itself). Prints one
JSON object: the record's relay, minute, sequence number, canonical bytes, signature, the
key used, and "valid": true or false. Exits 0 if the signature verifies, 1 if it does not,
2 if the registers cannot be read or hold no signed record.
"""

import argparse
import json
import sys
import time

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pymodbus.client import ModbusTcpClient

CONTEXT = b"gridledger record v1\n"
IDENTITY = (0, 72)
RECORD = (200, 117)
SIGNATURE = (320, 33)
KEY_OFFSET = 56
SAMPLE_LEN = 18


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return varint(2 * n if n >= 0 else -2 * n - 1)


def u32(regs, i):
    return (regs[i] << 16) | regs[i + 1]


def s32(regs, i):
    v = u32(regs, i)
    return v - (1 << 32) if v & 0x80000000 else v


def s16(v):
    return v - (1 << 16) if v & 0x8000 else v


def regs_bytes(regs):
    return b"".join(r.to_bytes(2, "big") for r in regs)


def sample(regs, at):
    """The ten raw values of the sample at register offset `at`, in FORMAT.md's order."""
    return [
        u32(regs, at), u32(regs, at + 2), u32(regs, at + 4),
        u32(regs, at + 6), u32(regs, at + 8), u32(regs, at + 10),
        regs[at + 12], s16(regs[at + 13]), s32(regs, at + 14), s32(regs, at + 16),
    ]


def canonical(rec):
    """The record's canonical bytes (FORMAT.md section 6) from the record block."""
    count = rec[7]
    if not 1 <= count <= 6:
        raise ValueError(f"sample count {count}")
    out = bytearray()
    out += varint(u32(rec, 1)) + varint(u32(rec, 3)) + varint(rec[5]) + varint(rec[6])
    out += varint(count)
    prev = None
    for i in range(count):
        s = sample(rec, 8 + i * SAMPLE_LEN)
        if prev is None:
            for v in s[:7]:
                out += varint(v)
            for v in s[7:]:
                out += zigzag(v)
        else:
            for a, b in zip(s, prev):
                out += zigzag(a - b)
        prev = s
    return bytes(out)


def read(client, unit, block):
    start, count = block
    r = client.read_input_registers(start, count=count, device_id=unit)
    if r.isError():
        raise IOError(f"read of {count} registers at {start}: {r}")
    return r.registers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("relay", help="HOST:PORT")
    ap.add_argument("--unit", type=int, default=1)
    ap.add_argument("--key", help="the registered public key, 64 hex digits")
    a = ap.parse_args()
    host, port = a.relay.rsplit(":", 1)
    client = ModbusTcpClient(host, port=int(port), timeout=3)
    if not client.connect():
        print(f"cannot connect to {a.relay}", file=sys.stderr)
        return 2
    try:
        ident = read(client, a.unit, IDENTITY)
        served = regs_bytes(ident[KEY_OFFSET:KEY_OFFSET + 16])
        # The record and its signature come in two requests: a pair whose sequence
        # numbers differ is torn (a record closed in between), and is read again.
        for _ in range(10):
            rec = read(client, a.unit, RECORD)
            sig = read(client, a.unit, SIGNATURE)
            if rec[0] != 0 and rec[0] == rec[116] == sig[0]:
                break
            time.sleep(0.2)
        else:
            print("no signed record (or only torn reads)", file=sys.stderr)
            return 2
    finally:
        client.close()
    body = canonical(rec)
    signature = regs_bytes(sig[1:33])
    if a.key:
        key, source = bytes.fromhex(a.key), "given"
    else:
        key, source = served, "served by the relay"
    try:
        VerifyKey(key).verify(CONTEXT + body, signature)
        valid = True
    except BadSignatureError:
        valid = False
    print(json.dumps({
        "relay": u32(rec, 1),
        "minute": u32(rec, 3),
        "seq": rec[0],
        "record": body.hex(),
        "signature": signature.hex(),
        "served_key": served.hex(),
        "key": key.hex(),
        "key_source": source,
        "valid": valid,
    }))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
