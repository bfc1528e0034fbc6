"""A plain pymodbus TCP server holding as many registers as relay-sim's map.

The comparison point for `bench/run.sh`: the same client reads the same block from it and
from relay-sim. Registers are served on FC03 and FC04 for unit 1 (any unit, in fact).
"""

import argparse
import asyncio
import logging

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import StartAsyncTcpServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--registers", type=int, default=317)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # A device context adds one to every request address, so the block starts at 1 and
    # holds one spare register.
    block = ModbusSequentialDataBlock(1, [i % 65536 for i in range(args.registers + 1)])
    device = ModbusDeviceContext(ir=block, hr=block)
    context = ModbusServerContext(devices=device, single=True)
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", args.port)))


if __name__ == "__main__":
    main()
