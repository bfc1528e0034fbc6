//! Prints the test vectors of docs/book/src/FORMAT.md (section 10).
//!
//! `cargo run -p node --example format-vectors`

fn main() {
    let Some(v) = gridledger::chain::vectors::vectors() else {
        eprintln!("mining the vectors was cancelled");
        std::process::exit(1);
    };
    println!("network name: {}", v.network.name);
    println!("difficulty bits: {}", v.network.bits);
    println!("miner secret key: {}", hex::encode(v.key.to_bytes()));
    println!(
        "miner public key: {}",
        hex::encode(v.key.verifying_key().to_bytes())
    );
    for (name, b) in ["genesis", "block 1", "block 2"].iter().zip(&v.blocks) {
        println!("{name} id: {}", b.id());
        println!("{name} bytes: {}", hex::encode(b.to_bytes()));
    }
    for (name, b) in ["rule 9 at the close", "rule 9 one ms early"]
        .iter()
        .zip(&v.boundary)
    {
        println!("{name} time: {}", b.header.time_ms);
        println!("{name} id: {}", b.id());
        println!("{name} bytes: {}", hex::encode(b.to_bytes()));
    }
    println!("gapped record id: {}", v.gapped.id());
    println!("gapped record bytes: {}", hex::encode(v.gapped.to_bytes()));
    println!("relay secret key: {}", hex::encode(v.relay_key.to_bytes()));
    println!(
        "relay public key: {}",
        hex::encode(v.relay_key.verifying_key().to_bytes())
    );
    println!("signed record id: {}", v.signed.id());
    println!("signed record bytes: {}", hex::encode(v.signed.to_bytes()));
}
