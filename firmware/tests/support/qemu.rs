//! Shared by the firmware's and the gateway's QEMU tests: the firmware image and a QEMU
//! LM3S6965 whose UART0 is a TCP socket.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn skip_or_fail(why: &str) {
    let required = std::env::var("GRIDLEDGER_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(!required, "{why} (GRIDLEDGER_REQUIRE_TOOLS=1)");
    eprintln!(
        "\n**** SKIPPED: {why}; set GRIDLEDGER_REQUIRE_TOOLS=1 to make this a failure ****\n"
    );
}

/// QEMU and the firmware image, or `None` after saying loudly why the test skips (a
/// failure with GRIDLEDGER_REQUIRE_TOOLS=1).
pub fn ready() -> Option<PathBuf> {
    if Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("qemu-system-arm is not installed (apt-get install qemu-system-arm)");
        return None;
    }
    let image = image();
    if image.is_none() {
        skip_or_fail(
            "the firmware image could not be built (rustup target add thumbv7m-none-eabi)",
        );
    }
    image
}

/// The firmware image: given, or built into its own target dir.
pub fn image() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GRIDLEDGER_FIRMWARE_IMAGE") {
        return Some(PathBuf::from(path));
    }
    // Both crates that use this file sit one level below the workspace root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target").join("qemu-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "-q",
            "-p",
            "firmware",
            "--profile",
            "firmware",
            "--target",
            "thumbv7m-none-eabi",
            "--features",
            "board",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .ok()?;
    status
        .success()
        .then(|| target_dir.join("thumbv7m-none-eabi/firmware/relay-firmware"))
}

/// QEMU, killed when the test ends.
pub struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts QEMU with the image and returns it with the address of its serial server, once
/// that accepts connections (QEMU serves one client at a time and listens again after it
/// leaves).
pub fn start(image: &PathBuf) -> Option<(Qemu, SocketAddr)> {
    start_with(image, None, &[])
}

/// The key region's address on the LM3S6965 (firmware/memory.x): where a signing key is
/// provisioned, apart from the image.
pub const KEY_REGION: u32 = 0x0003_FC00;

/// Writes a key region blob (`GLK1` and the 32-byte seed, docs/book/src/firmware.md) for `seed`
/// into `dir`, for [`start_with`].
pub fn key_blob(dir: &std::path::Path, seed: &[u8; 32]) -> PathBuf {
    let path = dir.join("relay-key.bin");
    let mut blob = b"GLK1".to_vec();
    blob.extend_from_slice(seed);
    std::fs::write(&path, blob).expect("key blob written");
    path
}

/// [`start`], with a signing key provisioned into the key region (QEMU's generic loader
/// writes the blob there at reset: the image stays keyless), and `extra` QEMU arguments
/// (`-icount`, say).
pub fn start_with(
    image: &PathBuf,
    key: Option<&std::path::Path>,
    extra: &[&str],
) -> Option<(Qemu, SocketAddr)> {
    // A free loopback port for QEMU's serial server (QEMU binds it itself).
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = qemu_command(image)
        .args(
            key.map(|k| {
                [
                    "-device".to_owned(),
                    format!(
                        "loader,file={},addr={KEY_REGION:#x},force-raw=on",
                        k.display()
                    ),
                ]
            })
            .into_iter()
            .flatten(),
        )
        .args(extra)
        .arg("-serial")
        .arg(format!(
            "tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let qemu = Qemu(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "QEMU's serial port did not open within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let QEMU notice the probe has gone before the real client connects (a loaded QEMU
    // can take a few hundred ms; connecting earlier leaves the client unheard).
    std::thread::sleep(Duration::from_millis(1000));
    Some((qemu, addr))
}

/// `qemu-system-arm` for the LM3S6965 board running `image`, without a monitor or a display
/// (the serial port and any more arguments are the caller's).
fn qemu_command(image: &PathBuf) -> Command {
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args([
        "-machine",
        "lm3s6965evb",
        "-nographic",
        "-monitor",
        "none",
        "-kernel",
    ])
    .arg(image);
    cmd
}

/// Starts QEMU with its UART on a pty (as a board on a serial port), and returns it with
/// the pty's path, read from QEMU's "char device redirected to /dev/pts/N" line.
pub fn start_pty(image: &PathBuf) -> Option<(Qemu, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = qemu_command(image)
        .args(["-serial", "pty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    let qemu = Qemu(child);
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in streams.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("/dev/pts/") {
                    let path: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(path);
                }
            }
        });
    }
    let path = rx.recv_timeout(Duration::from_secs(10)).ok()?;
    Some((qemu, path))
}

/// Starts QEMU and connects to its serial port.
pub fn boot(image: &PathBuf) -> Option<(Qemu, TcpStream)> {
    boot_with(image, None, &[])
}

/// [`boot`] with [`start_with`]'s key and arguments.
pub fn boot_with(
    image: &PathBuf,
    key: Option<&std::path::Path>,
    extra: &[&str],
) -> Option<(Qemu, TcpStream)> {
    let (qemu, addr) = start_with(image, key, extra)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.set_nodelay(true).ok()?;
            return Some((qemu, s));
        }
        assert!(
            Instant::now() < deadline,
            "QEMU's serial port did not reopen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
