//! The admin boundary: calls that change a node (adding, removing and resolving peers, and
//! the study's aliases of those) answer only on loopback or with the bearer token of
//! `--admin-token-file`. Reads and `POST /blocks` stay open: a block is judged on its own
//! merits, a peer list is trust.

use std::net::SocketAddr;
use std::path::Path;

use subtle::ConstantTimeEq;

/// Why the admin token cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file cannot be read.
    #[error("--admin-token-file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token (or one too short to be one).
    #[error("--admin-token-file {0}: holds no token of at least 16 characters")]
    Weak(std::path::PathBuf),
}

/// Reads an admin token: the file's first line, trimmed; at least 16 characters.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.chars().count() < 16 {
        return Err(TokenError::Weak(path.to_owned()));
    }
    Ok(token)
}

/// True if a call from `peer` with the `Authorization` header `auth` may change the node:
/// it comes from a loopback address, or carries `Bearer <token>` (compared in constant
/// time). A call whose address is unknown is treated as remote.
#[must_use]
pub fn allowed(token: Option<&str>, peer: Option<SocketAddr>, auth: Option<&str>) -> bool {
    if peer.is_some_and(|p| p.ip().is_loopback()) {
        return true;
    }
    let (Some(token), Some(auth)) = (token, auth) else {
        return false;
    };
    let Some(given) = auth.strip_prefix("Bearer ") else {
        return false;
    };
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// True if a request was made by a web page: it carries `Origin`, or a browser marks it
/// `Sec-Fetch-Site: cross-site` or `same-site`. Such a request never changes the node,
/// token or not: otherwise any page open in a browser on the node's machine could add a
/// peer through the loopback exemption (a cross-site `POST` needs no CORS consent to be
/// sent), and DNS rebinding could do the same under the page's own origin. Tools (curl,
/// other nodes, scripts) send neither header.
#[must_use]
pub fn from_browser_page(has_origin: bool, sec_fetch_site: Option<&str>) -> bool {
    has_origin || matches!(sec_fetch_site, Some("cross-site" | "same-site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_pages_are_told_apart_from_tools() {
        assert!(!from_browser_page(false, None));
        assert!(!from_browser_page(false, Some("none")));
        assert!(from_browser_page(true, None));
        assert!(from_browser_page(false, Some("cross-site")));
        assert!(from_browser_page(false, Some("same-site")));
    }

    #[test]
    fn loopback_or_the_token() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        let local6 = Some("[::1]:9".parse().expect("addr"));
        let remote = Some(SocketAddr::from(([10, 1, 2, 3], 9)));
        let t = Some("0123456789abcdef");
        assert!(allowed(None, local, None));
        assert!(allowed(t, local6, None));
        assert!(!allowed(None, remote, Some("Bearer 0123456789abcdef")));
        assert!(!allowed(t, remote, None));
        assert!(!allowed(t, remote, Some("Bearer 0123456789abcdeX")));
        assert!(!allowed(t, remote, Some("0123456789abcdef")));
        assert!(!allowed(t, remote, Some("Bearer 0123456789abcdef0")));
        assert!(allowed(t, remote, Some("Bearer 0123456789abcdef")));
        assert!(!allowed(t, None, None), "unknown address: remote");
    }
}
