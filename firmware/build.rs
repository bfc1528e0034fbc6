//! Puts memory.x and device.x where cortex-m-rt's link.x looks for them (only matters for
//! the board build).

use std::path::PathBuf;

fn main() {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let copied = std::fs::copy("memory.x", out.join("memory.x")).is_ok()
        && std::fs::copy("device.x", out.join("device.x")).is_ok();
    if copied {
        println!("cargo:rustc-link-search={}", out.display());
    }
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=device.x");
    println!("cargo:rerun-if-changed=build.rs");
}
