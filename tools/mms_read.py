#!/usr/bin/env python3
"""Read an IED's MMXU1, XCBR1.OpCnt and PTRC1.Op over MMS with open61850 (a pure-Python
MMS client written apart from gridledger), and print them as one JSON object.

    python3 tools/mms_read.py HOST PORT DOMAIN [--repeat N]
    python3 tools/mms_read.py HOST PORT IED --compare-icd FILE

DOMAIN is the logical device's MMS domain (relay-sim: GLRelayLD0). Besides the values it
prints `PPV.phsAB.t`, the time of the values (seconds since 1970). With --repeat N the read
is made N times on one association and one JSON line printed per read, each with the
wall time it took (for latency figures). With --compare-icd, open61850's own SCL reader
loads the ICD FILE for IED and its discovery reads the server's model over MMS (GetNameList
of every domain, variable and data set); every difference is printed, and the exit status
is 1 if there is one. Exit status 0 when every read succeeded, 1 when the
association or a read failed, 2 when open61850 is not installed.
"""

import json
import sys
import time

MEASURED = [
    "PPV.phsAB.cVal.mag.f", "PPV.phsBC.cVal.mag.f", "PPV.phsCA.cVal.mag.f",
    "PhV.phsA.cVal.mag.f", "PhV.phsB.cVal.mag.f", "PhV.phsC.cVal.mag.f",
    "A.phsA.cVal.mag.f", "A.phsB.cVal.mag.f", "A.phsC.cVal.mag.f",
    "Hz.mag.f", "TotW.mag.f", "TotVAr.mag.f", "TotPF.mag.f",
]


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, domain = argv[1], int(argv[2]), argv[3]
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 1
    if "--compare-icd" in argv:
        return compare_icd(host, port, domain, argv[argv.index("--compare-icd") + 1])
    try:
        from open61850.mms.client import MmsClient
        from open61850.mms.errors import DataAccessError
    except ImportError as e:
        print(f"open61850 is not installed: {e}", file=sys.stderr)
        return 2
    names = [f"{domain}/MMXU1.{p}[MX]" for p in MEASURED]
    names += [f"{domain}/XCBR1.OpCnt.stVal[ST]", f"{domain}/PTRC1.Op.general[ST]"]
    names += [f"{domain}/MMXU1.PPV.phsAB.t[MX]"]
    keys = MEASURED + ["XCBR1.OpCnt.stVal", "PTRC1.Op.general", "PPV.phsAB.t"]
    try:
        with MmsClient.connect(host, port, timeout=5.0) as client:
            for _ in range(repeat):
                t0 = time.perf_counter()
                results = client.read_many(names)
                took = time.perf_counter() - t0
                out = {"took_s": took}
                for k, r in zip(keys, results):
                    if isinstance(r, DataAccessError):
                        print(f"{k}: {r}", file=sys.stderr)
                        return 1
                    out[k] = r.value if k != "PPV.phsAB.t" else utc_seconds(r.value)
                print(json.dumps(out), flush=True)
    except Exception as e:  # the association or a read failed: say which
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def utc_seconds(v):
    """An MMS UtcTime as open61850 gives it, in seconds since 1970 (a float)."""
    if hasattr(v, "timestamp"):
        return v.timestamp()
    if isinstance(v, (bytes, bytearray)) and len(v) >= 7:
        return int.from_bytes(v[0:4], "big") + int.from_bytes(v[4:7], "big") / 2**24
    for attr in ("seconds", "secs", "seconds_since_epoch"):
        if hasattr(v, attr):
            return float(getattr(v, attr)) + float(getattr(v, "fraction", 0) or 0)
    return float(v)


def compare_icd(host, port, ied, path):
    try:
        from open61850.mms.client import MmsClient
        from open61850.mms.model import compare, discover
        from open61850.scl import load_model
    except ImportError as e:
        print(f"open61850 is not installed: {e}", file=sys.stderr)
        return 2
    try:
        expected = load_model(path, ied)
        with MmsClient.connect(host, port, timeout=5.0) as client:
            actual = discover(client)
    except Exception as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    differences = compare(expected, actual)
    for d in differences:
        print(d)
    if differences:
        return 1
    devices = len(expected.logical_devices)
    leaves = sum(len(list(n.references())) for d in expected.logical_devices.values() for n in d.logical_nodes.values())
    print(f"the ICD and the server agree: {devices} logical devices, {leaves} attributes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
