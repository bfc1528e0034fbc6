//! How the binary's results become what a shell sees: one line on stderr (`gridledger:
//! …`) and an exit status: 0 done, 1 failed, 2 a damaged data dir or backup (a script can
//! tell "repair it" from "try again"). The book's operating chapter lists them.

use std::process::ExitCode;

/// Says `message` as the binary's one line of failure; exit 1.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gridledger: {message}");
    ExitCode::FAILURE
}

/// Exit code and one-line message for a store error: 2 for a damaged data dir, 1 otherwise.
/// One line, so that a script reads it whole; a damaged data dir's names the chapter on
/// repairing it.
pub fn store_fail(e: &crate::store::StoreError) -> ExitCode {
    if e.is_corruption() {
        eprintln!("gridledger: {e} (damaged data dir: see docs/book/src/operating.md)");
        ExitCode::from(2)
    } else {
        eprintln!("gridledger: {e}");
        ExitCode::FAILURE
    }
}

/// The offline tools report a panic inside the storage engine as one line of their own
/// (see `ledger::guard`), not as a Rust backtrace.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Prints a backup's or a restore's line (to stderr when stdout carries the backup); exit
/// 2 for damage, as `verify`.
pub fn said(r: Result<(String, bool), crate::backup::BackupError>) -> ExitCode {
    match r {
        Ok((line, to_stderr)) if to_stderr => eprintln!("{line}"),
        Ok((line, _)) => println!("{line}"),
        Err(e) if e.is_damage() => {
            eprintln!("gridledger: {e}");
            return ExitCode::from(2);
        }
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

/// Runs `f`'s future on a new multi-threaded runtime.
pub fn on_runtime<F: std::future::Future<Output = ExitCode>>(f: impl FnOnce() -> F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => fail(format!("cannot start the async runtime: {e}")),
    }
}
