#!/usr/bin/env python3
"""A foreign IEC 61850 IED for gridledger's tests: PyPI's `iec61850` MMS server, hosting a
model written here (not relay-sim's): IED `FOREIGN`, logical device `PROT`, voltages in kV
and powers in kW and kvar (units multiplier k), an operation counter and a trip indication.

    python3 tools/mms_ied.py [--port 0]

Prints `listening HOST:PORT` once it serves, then takes one JSON command per line on stdin
and answers `ok` (or `error: ...`) on stdout:

    {"set": {"MMXU1.PPV.phsAB.cVal.mag.f": 115.2, ...}, "opcnt": 3, "op": false}
    {"drop": true}      close every association (the IED drops them mid-read)

Exit status 2 when `iec61850` is not installed.
"""

import asyncio
import json
import sys

IED = "FOREIGN"
LD = "PROT"

SCL = f"""<?xml version="1.0" encoding="UTF-8"?>
<SCL xmlns="http://www.iec.ch/61850/2003/SCL" version="2007" revision="B" release="4">
  <Header id="{IED}" nameStructure="IEDName"/>
  <IED name="{IED}" manufacturer="test" type="foreign">
    <Services><GetDirectory/><ReadWrite/></Services>
    <AccessPoint name="AP1"><Server><Authentication/>
      <LDevice inst="{LD}">
        <LN0 lnClass="LLN0" inst="" lnType="F_LLN0"/>
        <LN prefix="" lnClass="MMXU" inst="1" lnType="F_MMXU"/>
        <LN prefix="" lnClass="XCBR" inst="1" lnType="F_XCBR"/>
        <LN prefix="" lnClass="PTRC" inst="1" lnType="F_PTRC"/>
      </LDevice>
    </Server></AccessPoint>
  </IED>
  <DataTypeTemplates>
    <LNodeType id="F_LLN0" lnClass="LLN0"><DO name="Mod" type="F_INS"/></LNodeType>
    <LNodeType id="F_MMXU" lnClass="MMXU">
      <DO name="TotW" type="F_MV"/><DO name="TotVAr" type="F_MV"/><DO name="TotPF" type="F_MV"/>
      <DO name="Hz" type="F_MV"/><DO name="PPV" type="F_DEL"/><DO name="A" type="F_WYE"/>
    </LNodeType>
    <LNodeType id="F_XCBR" lnClass="XCBR"><DO name="OpCnt" type="F_INS"/></LNodeType>
    <LNodeType id="F_PTRC" lnClass="PTRC"><DO name="Op" type="F_ACT"/></LNodeType>
    <DOType id="F_INS" cdc="INS">
      <DA name="stVal" fc="ST" bType="INT32" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
    </DOType>
    <DOType id="F_ACT" cdc="ACT">
      <DA name="general" fc="ST" bType="BOOLEAN" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
    </DOType>
    <DOType id="F_MV" cdc="MV">
      <DA name="mag" fc="MX" bType="Struct" type="F_AV" dchg="true"/>
      <DA name="q" fc="MX" bType="Quality" qchg="true"/>
    </DOType>
    <DOType id="F_CMV" cdc="CMV">
      <DA name="cVal" fc="MX" bType="Struct" type="F_Vec" dchg="true"/>
      <DA name="q" fc="MX" bType="Quality" qchg="true"/>
    </DOType>
    <DOType id="F_WYE" cdc="WYE">
      <SDO name="phsA" type="F_CMV"/><SDO name="phsB" type="F_CMV"/><SDO name="phsC" type="F_CMV"/>
    </DOType>
    <DOType id="F_DEL" cdc="DEL">
      <SDO name="phsAB" type="F_CMV"/><SDO name="phsBC" type="F_CMV"/><SDO name="phsCA" type="F_CMV"/>
    </DOType>
    <DAType id="F_AV"><BDA name="f" bType="FLOAT32"/></DAType>
    <DAType id="F_Vec"><BDA name="mag" bType="Struct" type="F_AV"/></DAType>
  </DataTypeTemplates>
</SCL>
"""


async def main(argv):
    try:
        from iec61850 import IedServer
    except ImportError as e:
        print(f"iec61850 is not installed: {e}", file=sys.stderr)
        return 2
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    loop = asyncio.get_running_loop()

    def make():
        s = IedServer.from_scl_str(SCL, ied_name=IED)
        s.bind(f"127.0.0.1:{port}")
        return s

    server = make()
    await server.start()
    print(f"listening {server.bound_addr}", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            cmd = json.loads(line)
            if cmd.get("drop"):
                # Stop and start again on the same port: every association is cut.
                addr = server.bound_addr
                await server.stop()
                server = IedServer.from_scl_str(SCL, ied_name=IED)
                server.bind(addr)
                await server.start()
            with server.batch():
                for path, value in cmd.get("set", {}).items():
                    server.update_float32(f"{LD}/{path}", float(value))
                if "opcnt" in cmd:
                    server.update_int32(f"{LD}/XCBR1.OpCnt.stVal", int(cmd["opcnt"]))
                if "op" in cmd:
                    server.update_bool(f"{LD}/PTRC1.Op.general", bool(cmd["op"]))
            print("ok", flush=True)
        except Exception as e:  # tell the test, keep serving
            print(f"error: {type(e).__name__}: {e}", flush=True)
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
