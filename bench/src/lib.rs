//! What the bench binaries share.

/// A multi-threaded tokio runtime, or `None` after saying why on stderr (`name: error`).
#[must_use]
pub fn runtime(name: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("{name}: {e}");
            None
        }
    }
}
