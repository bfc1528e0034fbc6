//! `raw-responder`: the loopback limit for `modbus-load`. A minimal Modbus TCP responder
//! that answers every 12-byte read request with the same fixed frame (the transaction id
//! echoed, then a precomputed FC04 answer of `--quantity` registers), on one thread as
//! relay-sim runs by default. It parses nothing and checks nothing: what a server costs
//! beyond it is the server's own work.
//!
//! `raw-responder --listen 127.0.0.1:5030 --quantity 117`

use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fixed-frame Modbus TCP responder: the loopback limit.
#[derive(Debug, Parser)]
#[command(name = "raw-responder", about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5030")]
    listen: SocketAddr,
    /// Registers in every answer.
    #[arg(long, default_value_t = 117, value_parser = clap::value_parser!(u16).range(1..=125))]
    quantity: u16,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| e.to_string())?;
        let n = usize::from(args.quantity);
        // MBAP (tid patched per request) + unit + FC04 + byte count + registers.
        let mut answer = vec![0u8, 0, 0, 0];
        answer.extend_from_slice(&((3 + 2 * n) as u16).to_be_bytes());
        answer.extend_from_slice(&[1, 0x04, (2 * n) as u8]);
        answer.extend((0..2 * n).map(|i| i as u8));
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let mut answer = answer.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 12];
                while s.read_exact(&mut req).await.is_ok() {
                    answer[0] = req[0];
                    answer[1] = req[1];
                    if s.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}
