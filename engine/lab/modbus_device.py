"""The lab controller's Modbus/TCP server (pymodbus) with writable registers and no access
control, and the poller that reads it every few seconds as an HMI would.

``python -m engine.lab.modbus_device serve`` or ``... poll HOST``.
"""

from __future__ import annotations

import sys
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import StartTcpServer

POLL_SECONDS = 2.0
# Setpoints and process values a small PLC might hold.
REGISTERS = [215, 220, 1, 0, 1500, 42, 0, 7]


def serve(port: int = 502) -> None:
    # Block address 1 is protocol address 0 (pymodbus counts blocks from one).
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, REGISTERS * 4),
        ir=ModbusSequentialDataBlock(1, REGISTERS * 4),
        co=ModbusSequentialDataBlock(1, [0] * 32),
        di=ModbusSequentialDataBlock(1, [1] * 32),
    )
    StartTcpServer(
        context=ModbusServerContext(devices=device, single=True), address=("0.0.0.0", port)
    )


def poll(host: str, port: int = 502) -> None:
    client = ModbusTcpClient(host, port=port, timeout=2)
    while True:
        if client.connect():
            reply = client.read_holding_registers(0, count=8)
            values = getattr(reply, "registers", reply)
            print(f"read {values}", flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        poll(sys.argv[2])
