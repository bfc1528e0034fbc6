#!/usr/bin/env python3
"""Read an IED's MMXU1, XCBR1.OpCnt and PTRC1.Op over MMS with open61850 (a pure-Python
MMS client written apart from gridledger), and print them as one JSON object.

    python3 tools/mms_read.py HOST PORT DOMAIN [--repeat N]

DOMAIN is the logical device's MMS domain (relay-sim: GLRelayLD0). With --repeat N the read
is made N times on one association and one JSON line printed per read, each with the
wall time it took (for latency figures). Exit status 0 when every read succeeded, 1 when the
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
    try:
        from open61850.mms.client import MmsClient
        from open61850.mms.errors import DataAccessError
    except ImportError as e:
        print(f"open61850 is not installed: {e}", file=sys.stderr)
        return 2
    names = [f"{domain}/MMXU1.{p}[MX]" for p in MEASURED]
    names += [f"{domain}/XCBR1.OpCnt.stVal[ST]", f"{domain}/PTRC1.Op.general[ST]"]
    keys = MEASURED + ["XCBR1.OpCnt.stVal", "PTRC1.Op.general"]
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
                    out[k] = r.value
                print(json.dumps(out), flush=True)
    except Exception as e:  # the association or a read failed: say which
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
