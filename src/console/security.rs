//! What keeps the console's actions to those who hold its token: sessions, CSRF tokens, the
//! `Host` and cross-site checks, and the headers every response carries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use super::Console;
use super::pages::error_page;

/// The session cookie.
pub(super) const COOKIE: &str = "codegen_console";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept; the oldest goes first.
const MAX_SESSIONS: usize = 1000;

/// The content security policy: everything from the console itself, nothing inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// `n` random bytes, in hexadecimal.
pub(super) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

struct Session {
    csrf: String,
    created: Instant,
}

/// The signed-in sessions, in memory: a restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session: its id (the cookie) and its CSRF token.
    pub(super) fn open(&self) -> (String, String) {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        by_id.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        while by_id.len() >= MAX_SESSIONS {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => by_id.remove(&oldest),
                None => break,
            };
        }
        by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        (id, csrf)
    }

    /// The CSRF token of the session whose cookie `headers` carry, while it lasts.
    pub(super) fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, COOKIE)?;
        let by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        by_id
            .get(id.as_str())
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .map(|s| s.csrf.clone())
    }

    /// Ends the session whose cookie `headers` carry.
    pub(super) fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
            by_id.remove(id.as_str());
        }
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Checks every request and sets the headers of every response: a `Host` the console serves
/// (against DNS rebinding), no POST from another site, no POST at all when read-only.
pub(super) async fn guard(
    State(console): State<Arc<Console>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let mut response = if !console.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        error_page(
            StatusCode::MISDIRECTED_REQUEST,
            "Unknown host",
            &format!(
                "This console answers to {}, not to the Host `{host}`.",
                console.hosts.join(", ")
            ),
        )
    } else if req.method() == Method::POST && cross_site(headers, host) {
        error_page(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "Actions are only taken from the console's own pages.",
        )
    } else if req.method() == Method::POST && console.read_only() {
        error_page(
            StatusCode::FORBIDDEN,
            "Read-only console",
            "This console was started with --read-only: it takes no actions.",
        )
    } else if req.method() != Method::GET && req.method() != Method::POST {
        error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "The console answers GET and POST only.",
        )
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: under it browsers send `Origin: null` with forms, and the origin
        // check above needs the real one. `same-origin` still sends nothing to other sites.
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Whether a request says it comes from another site: an `Origin` other than the console's,
/// or a `Sec-Fetch-Site` other than `same-origin`. Clients that send neither (curl) still need
/// the session and its CSRF token.
fn cross_site(headers: &HeaderMap, host: &str) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let expected = format!("http://{host}");
        if !origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&expected))
        {
            return true;
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() != b"same-origin";
    }
    false
}

/// The `Set-Cookie` value of a new session.
pub(super) fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcdef", "abcdef"));
        assert!(!same("abcdef", "abcdeg"));
        assert!(!same("abc", "abcdef"));
        assert!(!same("abcdef", "abc"));
        assert!(!same("", "a"));
        assert!(same("", ""));
    }

    #[test]
    fn another_origin_or_site_is_cross_site() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h, "127.0.0.1:1"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:1"),
        );
        assert!(!cross_site(&h, "127.0.0.1:1"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, "127.0.0.1:1"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h, "127.0.0.1:1"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h, "127.0.0.1:1"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h, "127.0.0.1:1"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; codegen_console=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
