//! The stylesheet and the script, embedded in the binary and served under a name that holds a
//! hash of their content, so that browsers may keep them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages::error_page;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// FNV-1a, 64 bits: enough to tell two versions of a file apart.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

static CSS_NAME: LazyLock<String> = LazyLock::new(|| format!("console.{:016x}.css", fnv(CSS)));
static JS_NAME: LazyLock<String> = LazyLock::new(|| format!("console.{:016x}.js", fnv(JS)));

/// The address of the stylesheet.
pub(super) fn css_url() -> String {
    format!("/assets/{}", *CSS_NAME)
}

/// The address of the script.
pub(super) fn js_url() -> String {
    format!("/assets/{}", *JS_NAME)
}

/// `GET /assets/{name}`.
pub(super) async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = if name == *CSS_NAME {
        (CSS, "text/css; charset=utf-8")
    } else if name == *JS_NAME {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such file: the page that asked for it is older than this console; reload it.",
        );
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
