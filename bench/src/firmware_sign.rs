//! `firmware-sign`: what signing costs the firmware relay (issue 30), printed beside the
//! goals: flash and static RAM of the image (`arm-none-eabi-size`), and the instructions one
//! Ed25519 signature takes, counted by QEMU with `-icount shift=0` (every instruction one
//! nanosecond of the board's virtual clock, so the firmware's own measure of its signing
//! time, in microseconds, is thousands of instructions), stated as time at the board's
//! 50 MHz at one instruction a cycle. (The firmware's clock is SysTick at the board's
//! 12 MHz, read in microseconds: a count to within a thousand instructions.)
//!
//!     cargo build -p firmware --profile firmware --target thumbv7m-none-eabi --features board
//!     cargo run --release -p gridledger-bench --bin firmware-sign [-- IMAGE]
//!
//! QEMU busy-polls a core: run nothing else beside it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_core::registers::{
    attach_signature, decode_live, decode_record, encode_clock, CLOCK, LIVE, RECORD, SIGNATURE,
    SIGN_TIME,
};
use relay_core::rtu::{build_frame, parse_frame, MAX_FRAME};

const FLASH_GOAL: u64 = 32 * 1024;
const RAM_GOAL: u64 = 8 * 1024;
const SIGN_GOAL_MS: f64 = 200.0;
const BOARD_HZ: f64 = 50e6;
const SAMPLE_PERIOD_MS: f64 = 10_000.0;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn transact(s: &mut TcpStream, pdu: &[u8]) -> Result<Vec<u8>, String> {
    let mut f = [0u8; MAX_FRAME];
    let n = build_frame(1, pdu, &mut f).ok_or("frame too long")?;
    s.write_all(&f[..n]).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((_, pdu)) = parse_frame(&buf) {
            return Ok(pdu.to_vec());
        }
        if Instant::now() > deadline {
            return Err("no answer in 20 s".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("QEMU closed the serial port".into()),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn read(s: &mut TcpStream, start: u16, len: u16) -> Result<Vec<u16>, String> {
    let pdu = transact(s, &[0x04, (start >> 8) as u8, start as u8, 0, len as u8])?;
    if pdu.first() != Some(&0x04) {
        return Err(format!("exception {pdu:02x?}"));
    }
    Ok(pdu[2..]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

fn size(image: &PathBuf) -> Option<(u64, u64)> {
    let out = Command::new("arm-none-eabi-size")
        .arg(image)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| (v[0] + v[1], v[1] + v[2]))
}

fn main() -> Result<(), String> {
    let image = std::env::args().nth(1).map_or_else(
        || PathBuf::from("target/thumbv7m-none-eabi/firmware/relay-firmware"),
        PathBuf::from,
    );
    if !image.exists() {
        return Err(format!(
            "no image at {}: cargo build -p firmware --profile firmware --target thumbv7m-none-eabi --features board",
            image.display()
        ));
    }
    println!("firmware-sign: {}", image.display());
    match size(&image) {
        Some((flash, ram)) => {
            println!(
                "  flash        {flash:>8} B   goal <= {FLASH_GOAL} B   {}",
                if flash <= FLASH_GOAL {
                    "met"
                } else {
                    "NOT met"
                }
            );
            println!(
                "  static RAM   {ram:>8} B   goal <= {RAM_GOAL} B    {}",
                if ram <= RAM_GOAL { "met" } else { "NOT met" }
            );
        }
        None => println!("  flash, RAM: arm-none-eabi-size not found"),
    }

    let dir = std::env::temp_dir().join(format!("firmware-sign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let blob = dir.join("key.bin");
    let mut key = b"GLK1".to_vec();
    key.extend_from_slice(&[0x42; 32]);
    std::fs::write(&blob, key).map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let _qemu = Killed(
        Command::new("qemu-system-arm")
            .args(["-machine", "lm3s6965evb", "-nographic", "-monitor", "none"])
            .args(["-icount", "shift=0"])
            .arg("-kernel")
            .arg(&image)
            .arg("-device")
            .arg(format!(
                "loader,file={},addr=0x3fc00,force-raw=on",
                blob.display()
            ))
            .arg("-serial")
            .arg(format!(
                "tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("qemu-system-arm: {e}"))?,
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(addr) {
            break s;
        }
        if Instant::now() > deadline {
            return Err("QEMU's serial port did not open".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    // The relay's clock one virtual second before a minute boundary.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let set = (now / 60 + 1) * 60 - 1;
    let mut pdu = vec![0x10, (CLOCK.start >> 8) as u8, CLOCK.start as u8, 0, 4, 8];
    for w in encode_clock(set) {
        pdu.extend_from_slice(&w.to_be_bytes());
    }
    transact(&mut s, &pdu)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut signed = Vec::new();
    // Two signatures: the first and the one a minute later would take too long under
    // -icount (a virtual minute is 60e9 instructions); the first alone, then the live
    // block right after it.
    while signed.is_empty() {
        if Instant::now() > deadline {
            return Err("no signed record within 120 s".into());
        }
        if let Ok(mut r) = decode_record(&read(&mut s, RECORD.start, RECORD.len)?) {
            let sig = read(&mut s, SIGNATURE.start, SIGNATURE.len)?;
            if attach_signature(&mut r, &sig).is_ok() && r.record.signature.is_some() {
                let t = read(&mut s, SIGN_TIME.start, SIGN_TIME.len)?;
                let us = (u32::from(t[0]) << 16) | u32::from(t[1]);
                let live =
                    decode_live(&read(&mut s, LIVE.start, LIVE.len)?).map_err(|e| e.to_string())?;
                signed.push((r.record.minute, us, live.minute, live.second));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (minute, us, live_minute, live_second) = signed[0];
    // shift=0: one instruction per virtual nanosecond; the relay measures in whole
    // microseconds, so the count is known to within a thousand instructions.
    let instructions = f64::from(us) * 1e3;
    let at_50mhz_ms = instructions / BOARD_HZ * 1000.0;
    let bound_ms = (f64::from(us) + 1.0) * 1e3 / BOARD_HZ * 1000.0;
    println!(
        "  one signature {:>7.3} M instructions (relay clock {us} us at -icount shift=0; +-1000)",
        instructions / 1e6
    );
    println!(
        "  at 50 MHz     {at_50mhz_ms:>7.0} ms (at most {bound_ms:.0} ms)   goal <= {SIGN_GOAL_MS:.0} ms   {}",
        if bound_ms <= SIGN_GOAL_MS { "met" } else { "NOT met" }
    );
    println!(
        "  samples       record of minute {} signed; the live block then held minute {live_minute} second {live_second}: the new minute's first sample is published before signing, and signing ({at_50mhz_ms:.0} ms at 50 MHz) is shorter than the {SAMPLE_PERIOD_MS:.0} ms sample period, so no sample slot is skipped   {}",
        minute.0,
        if live_minute.0 == minute.0 + 1 && bound_ms < SAMPLE_PERIOD_MS {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
