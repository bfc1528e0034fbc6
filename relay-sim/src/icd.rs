//! The IEC 61850 model relay-sim serves over MMS, written as an SCL ICD file
//! (IEC 61850-6): the same text is what `relay-sim --write-icd FILE` publishes and what
//! the MMS server builds its model from, so the published description cannot drift from
//! what is served.
//!
//! One logical device per simulated relay (`LD0`, `LD1`, … in unit id order), each with:
//!
//! | logical node | data | from relay-core |
//! |---|---|---|
//! | `MMXU1` | `PPV.phsAB/phsBC/phsCA.cVal.mag.f` (V) | Vab, Vbc, Vca |
//! | `MMXU1` | `PhV.phsA/phsB/phsC.cVal.mag.f` (V) | Vab/√3, Vbc/√3, Vca/√3 (derived: relay-core records line-to-line voltages only) |
//! | `MMXU1` | `A.phsA/phsB/phsC.cVal.mag.f` (A) | Ia, Ib, Ic |
//! | `MMXU1` | `Hz.mag.f`, `TotW.mag.f` (W), `TotVAr.mag.f` (var), `TotPF.mag.f` | f, P, Q, PF |
//! | `XCBR1` | `OpCnt.stVal` | fault openings since the relay started |
//! | `PTRC1` | `Op.general` | true for the sample at which openings were counted |
//!
//! Every measured value is in SI units with multiplier 0 (its `units` says so), so that a
//! float32 carries relay-core's integer volts, watts and vars exactly up to 16.7 million.

use std::fmt::Write;

/// The IED name of relay-sim's model: MMS domains are `GLRelayLD0`, `GLRelayLD1`, ….
pub const IED_NAME: &str = "GLRelay";

/// The logical device instance of the relay at `index` (0 for the first unit id).
#[must_use]
pub fn ld_inst(index: usize) -> String {
    format!("LD{index}")
}

/// One relay's description in the ICD.
#[derive(Clone, Debug)]
pub struct IcdRelay {
    /// Its network-wide relay id.
    pub relay_id: u32,
    /// Its Modbus unit id.
    pub unit: u8,
    /// Its name.
    pub name: String,
}

/// The ICD text for `relays`, served on `port`.
#[must_use]
pub fn icd(relays: &[IcdRelay], substation: &str, port: u16) -> String {
    let mut lds = String::new();
    for (k, r) in relays.iter().enumerate() {
        let _ = write!(
            lds,
            r#"        <LDevice inst="{inst}" desc="{desc}">
          <LN0 lnClass="LLN0" inst="" lnType="GL_LLN0">
            <DataSet name="Measurements" desc="MMXU1's measured values, in one read">
{fcdas}            </DataSet>
            <DOI name="NamPlt">
              <DAI name="vendor"><Val>gridledger</Val></DAI>
              <DAI name="swRev"><Val>{version}</Val></DAI>
              <DAI name="d"><Val>{desc}</Val></DAI>
              <DAI name="configRev"><Val>1</Val></DAI>
            </DOI>
          </LN0>
          <LN prefix="" lnClass="LPHD" inst="1" lnType="GL_LPHD">
            <DOI name="PhyNam">
              <DAI name="vendor"><Val>gridledger</Val></DAI>
              <DAI name="model"><Val>relay-sim</Val></DAI>
              <DAI name="serNum"><Val>{relay_id}</Val></DAI>
            </DOI>
          </LN>
          <LN prefix="" lnClass="MMXU" inst="1" lnType="GL_MMXU">
{units}          </LN>
          <LN prefix="" lnClass="XCBR" inst="1" lnType="GL_XCBR"/>
          <LN prefix="" lnClass="PTRC" inst="1" lnType="GL_PTRC"/>
        </LDevice>
"#,
            inst = ld_inst(k),
            desc = xml_escape(&format!(
                "relay {} (unit {}): {}, {}",
                r.relay_id, r.unit, r.name, substation
            )),
            version = env!("CARGO_PKG_VERSION"),
            relay_id = r.relay_id,
            fcdas = dataset_fcdas(&ld_inst(k)),
            units = units_dois(),
        );
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!--
  relay-sim's IEC 61850 model (written by relay-sim with its write-icd flag): one logical device per
  simulated relay. MMS domain = IED name + LD inst ("{ied}LD0"). Measured values are in SI
  units with multiplier 0; PhV is derived (line-to-line / sqrt 3), everything else is the
  relay's own measurement. See docs/book/src/iec61850.md.
-->
<SCL xmlns="http://www.iec.ch/61850/2003/SCL" version="2007" revision="B" release="4">
  <Header id="{ied}" nameStructure="IEDName" version="1" revision="1" toolID="relay-sim {version}"/>
  <Communication>
    <SubNetwork name="Station" type="8-MMS">
      <ConnectedAP iedName="{ied}" apName="AP1">
        <Address>
          <P type="IP">127.0.0.1</P>
          <P type="MMS-Port">{port}</P>
        </Address>
      </ConnectedAP>
    </SubNetwork>
  </Communication>
  <IED name="{ied}" desc="gridledger relay-sim" manufacturer="gridledger" type="relay-sim" configVersion="{version}">
    <Services>
      <GetDirectory/>
      <GetDataObjectDefinition/>
      <GetDataSetValue/>
      <DataSetDirectory/>
      <ReadWrite/>
    </Services>
    <AccessPoint name="AP1">
      <Server>
        <Authentication/>
{lds}      </Server>
    </AccessPoint>
  </IED>
{templates}</SCL>
"#,
        ied = IED_NAME,
        version = env!("CARGO_PKG_VERSION"),
        templates = TEMPLATES,
    )
}

/// The measured values of MMXU1, as (data object path, SI unit as IEC 61850-7-3 codes it).
pub const MEASURED: [(&str, u8); 13] = [
    ("PPV.phsAB", 29),
    ("PPV.phsBC", 29),
    ("PPV.phsCA", 29),
    ("PhV.phsA", 29),
    ("PhV.phsB", 29),
    ("PhV.phsC", 29),
    ("A.phsA", 5),
    ("A.phsB", 5),
    ("A.phsC", 5),
    ("Hz", 33),
    ("TotW", 62),
    ("TotVAr", 63),
    ("TotPF", 1),
];

fn measured() -> impl Iterator<Item = (&'static str, u8)> {
    MEASURED.iter().copied()
}

/// The data attribute under a data object that holds the magnitude.
#[must_use]
pub fn magnitude_of(do_path: &str) -> &'static str {
    if do_path.contains('.') {
        "cVal.mag.f"
    } else {
        "mag.f"
    }
}

fn dataset_fcdas(inst: &str) -> String {
    let mut s = String::new();
    for (p, _) in measured() {
        let _ = writeln!(
            s,
            r#"              <FCDA ldInst="{inst}" prefix="" lnClass="MMXU" lnInst="1" doName="{p}" daName="{da}" fc="MX"/>"#,
            da = magnitude_of(p)
        );
    }
    s
}

fn units_dois() -> String {
    let mut s = String::new();
    for (p, unit) in measured() {
        let (d, sdo) = match p.split_once('.') {
            Some((d, sdo)) => (d, Some(sdo)),
            None => (p, None),
        };
        let inner = format!(
            r#"<DAI name="SIUnit"><Val>{}</Val></DAI><DAI name="multiplier"><Val></Val></DAI>"#,
            si_unit_name(unit)
        );
        match sdo {
            Some(sdo) => {
                let _ = writeln!(
                    s,
                    r#"            <DOI name="{d}"><SDI name="{sdo}"><SDI name="units">{inner}</SDI></SDI></DOI>"#
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r#"            <DOI name="{d}"><SDI name="units">{inner}</SDI></DOI>"#
                );
            }
        }
    }
    s
}

fn si_unit_name(code: u8) -> &'static str {
    match code {
        29 => "V",
        5 => "A",
        33 => "Hz",
        62 => "W",
        63 => "VAr",
        _ => "",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The data type templates: IEC 61850-7-3 common data classes, reduced to what relay-sim
/// serves.
const TEMPLATES: &str = r#"  <DataTypeTemplates>
    <LNodeType id="GL_LLN0" lnClass="LLN0">
      <DO name="Mod" type="GL_ENS_Beh"/>
      <DO name="Beh" type="GL_ENS_Beh"/>
      <DO name="Health" type="GL_ENS_Health"/>
      <DO name="NamPlt" type="GL_LPL"/>
    </LNodeType>
    <LNodeType id="GL_LPHD" lnClass="LPHD">
      <DO name="PhyNam" type="GL_DPL"/>
      <DO name="PhyHealth" type="GL_ENS_Health"/>
      <DO name="Proxy" type="GL_SPS"/>
    </LNodeType>
    <LNodeType id="GL_MMXU" lnClass="MMXU">
      <DO name="Beh" type="GL_ENS_Beh"/>
      <DO name="TotW" type="GL_MV"/>
      <DO name="TotVAr" type="GL_MV"/>
      <DO name="TotPF" type="GL_MV"/>
      <DO name="Hz" type="GL_MV"/>
      <DO name="PPV" type="GL_DEL"/>
      <DO name="PhV" type="GL_WYE"/>
      <DO name="A" type="GL_WYE"/>
    </LNodeType>
    <LNodeType id="GL_XCBR" lnClass="XCBR">
      <DO name="Beh" type="GL_ENS_Beh"/>
      <DO name="Loc" type="GL_SPS"/>
      <DO name="OpCnt" type="GL_INS"/>
      <DO name="Pos" type="GL_DPS"/>
    </LNodeType>
    <LNodeType id="GL_PTRC" lnClass="PTRC">
      <DO name="Beh" type="GL_ENS_Beh"/>
      <DO name="Op" type="GL_ACT"/>
      <DO name="Tr" type="GL_ACT"/>
    </LNodeType>
    <DOType id="GL_ENS_Beh" cdc="ENS">
      <DA name="stVal" fc="ST" bType="Enum" type="BehModeKind" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_ENS_Health" cdc="ENS">
      <DA name="stVal" fc="ST" bType="Enum" type="HealthKind" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_LPL" cdc="LPL">
      <DA name="vendor" fc="DC" bType="VisString255"/>
      <DA name="swRev" fc="DC" bType="VisString255"/>
      <DA name="d" fc="DC" bType="VisString255"/>
      <DA name="configRev" fc="DC" bType="VisString255"/>
    </DOType>
    <DOType id="GL_DPL" cdc="DPL">
      <DA name="vendor" fc="DC" bType="VisString255"/>
      <DA name="model" fc="DC" bType="VisString255"/>
      <DA name="serNum" fc="DC" bType="VisString255"/>
    </DOType>
    <DOType id="GL_SPS" cdc="SPS">
      <DA name="stVal" fc="ST" bType="BOOLEAN" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_DPS" cdc="DPS">
      <DA name="stVal" fc="ST" bType="Dbpos" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_INS" cdc="INS">
      <DA name="stVal" fc="ST" bType="INT32" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_ACT" cdc="ACT">
      <DA name="general" fc="ST" bType="BOOLEAN" dchg="true"/>
      <DA name="q" fc="ST" bType="Quality" qchg="true"/>
      <DA name="t" fc="ST" bType="Timestamp"/>
    </DOType>
    <DOType id="GL_MV" cdc="MV">
      <DA name="mag" fc="MX" bType="Struct" type="GL_AnalogueValue" dchg="true"/>
      <DA name="q" fc="MX" bType="Quality" qchg="true"/>
      <DA name="t" fc="MX" bType="Timestamp"/>
      <DA name="units" fc="CF" bType="Struct" type="GL_Unit"/>
    </DOType>
    <DOType id="GL_CMV" cdc="CMV">
      <DA name="cVal" fc="MX" bType="Struct" type="GL_Vector" dchg="true"/>
      <DA name="q" fc="MX" bType="Quality" qchg="true"/>
      <DA name="t" fc="MX" bType="Timestamp"/>
      <DA name="units" fc="CF" bType="Struct" type="GL_Unit"/>
    </DOType>
    <DOType id="GL_WYE" cdc="WYE">
      <SDO name="phsA" type="GL_CMV"/>
      <SDO name="phsB" type="GL_CMV"/>
      <SDO name="phsC" type="GL_CMV"/>
    </DOType>
    <DOType id="GL_DEL" cdc="DEL">
      <SDO name="phsAB" type="GL_CMV"/>
      <SDO name="phsBC" type="GL_CMV"/>
      <SDO name="phsCA" type="GL_CMV"/>
    </DOType>
    <DAType id="GL_AnalogueValue">
      <BDA name="f" bType="FLOAT32"/>
    </DAType>
    <DAType id="GL_Vector">
      <BDA name="mag" bType="Struct" type="GL_AnalogueValue"/>
    </DAType>
    <DAType id="GL_Unit">
      <BDA name="SIUnit" bType="Enum" type="SIUnitKind"/>
      <BDA name="multiplier" bType="Enum" type="MultiplierKind"/>
    </DAType>
    <EnumType id="BehModeKind">
      <EnumVal ord="1">on</EnumVal>
      <EnumVal ord="2">blocked</EnumVal>
      <EnumVal ord="3">test</EnumVal>
      <EnumVal ord="4">test/blocked</EnumVal>
      <EnumVal ord="5">off</EnumVal>
    </EnumType>
    <EnumType id="HealthKind">
      <EnumVal ord="1">Ok</EnumVal>
      <EnumVal ord="2">Warning</EnumVal>
      <EnumVal ord="3">Alarm</EnumVal>
    </EnumType>
    <EnumType id="SIUnitKind">
      <EnumVal ord="1"></EnumVal>
      <EnumVal ord="5">A</EnumVal>
      <EnumVal ord="29">V</EnumVal>
      <EnumVal ord="33">Hz</EnumVal>
      <EnumVal ord="62">W</EnumVal>
      <EnumVal ord="63">VAr</EnumVal>
    </EnumType>
    <EnumType id="MultiplierKind">
      <EnumVal ord="-3">m</EnumVal>
      <EnumVal ord="0"></EnumVal>
      <EnumVal ord="3">k</EnumVal>
      <EnumVal ord="6">M</EnumVal>
    </EnumType>
  </DataTypeTemplates>
"#;
