//! The HTTP client under every generated client.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};

use super::auth::{
    Applied, Credential, KeyLocation, SchemeKind, Secret, SecurityScheme, TokenCache,
};
use super::{HttpOperation, RequestParts};
use crate::telemetry::{record, trace};
use crate::{RetryPolicy, TaskError};

/// Options for one call, overriding the client's.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The idempotency key to send with a non-idempotent operation. The durable runtime derives
    /// it from the task id, so that it is the same on every attempt and every replay. Without
    /// one, a call makes one key and sends it on each of its attempts.
    pub idempotency_key: Option<String>,
    /// The retry policy for this call.
    pub retry_policy: Option<RetryPolicy>,
    /// The media types to send the body in, most preferred first, where the operation offers
    /// several; empty for the client's preference
    /// ([`HttpClient::with_media_types`]).
    pub media_types: Vec<String>,
}

/// An HTTP client bound to one API: base URL, credentials, timeouts and retry policy.
///
/// Cloning is cheap; clones share connections.
#[derive(Clone)]
pub struct HttpClient {
    base_url: String,
    http: reqwest::Client,
    headers: HeaderMap,
    retry_policy: Option<RetryPolicy>,
    idempotency_header: HeaderName,
    timeout: Duration,
    /// Credentials by security scheme, in the order they were given.
    credentials: Arc<Vec<Applied>>,
    /// Media types to send bodies in when an operation offers several, most preferred first.
    media_types: Vec<String>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials: only their names are shown.
        f.debug_struct("HttpClient")
            .field("base_url", &self.base_url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("retry_policy", &self.retry_policy)
            .field("idempotency_header", &self.idempotency_header)
            .field("timeout", &self.timeout)
            .field(
                "credentials",
                &self
                    .credentials
                    .iter()
                    .map(|c| c.scheme)
                    .collect::<Vec<_>>(),
            )
            .field("media_types", &self.media_types)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for the API served at `base_url` (`https://api.example.com/v1`).
    pub fn new(base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Self {
            base_url,
            http: reqwest::Client::new(),
            headers: HeaderMap::new(),
            retry_policy: None,
            idempotency_header: HeaderName::from_static("idempotency-key"),
            timeout: Duration::from_secs(30),
            credentials: Arc::new(Vec::new()),
            media_types: Vec::new(),
        }
    }

    /// The base URL every path is appended to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Uses this retry policy for every call, instead of each operation's own.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// Gives up on an attempt that has not completed after `timeout` (30 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses `client` for connections, with its own TLS, proxy and pool settings.
    pub fn with_reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Sends this header on every request. A header marked `sensitive` (credentials) is never
    /// shown by `Debug` or logged.
    pub fn with_header(
        mut self,
        name: &str,
        value: &str,
        sensitive: bool,
    ) -> Result<Self, TaskError> {
        let name = HeaderName::try_from(name)
            .map_err(|err| TaskError::permanent(format!("invalid header name `{name}`: {err}")))?;
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| TaskError::permanent(format!("invalid value for header `{name}`")))?;
        value.set_sensitive(sensitive);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` on every request.
    pub fn with_bearer_token(self, token: &str) -> Result<Self, TaskError> {
        self.with_header("authorization", &format!("Bearer {token}"), true)
    }

    /// Sends HTTP basic credentials on every request.
    pub fn with_basic_auth(self, user: &str, password: &str) -> Result<Self, TaskError> {
        let encoded = BASE64_STANDARD.encode(format!("{user}:{password}"));
        self.with_header("authorization", &format!("Basic {encoded}"), true)
    }

    /// Uses `credential` for the security scheme `scheme` wherever an operation asks for it
    /// (replacing earlier credentials of that scheme). An operation that accepts several
    /// schemes gets the first alternative of its description whose credentials are all given.
    pub fn with_credential(mut self, scheme: &SecurityScheme, credential: Credential) -> Self {
        let tokens = matches!(credential, Credential::ClientCredentials { .. })
            .then(|| Arc::new(TokenCache::default()));
        let mut list = Vec::clone(&self.credentials);
        list.retain(|c| c.scheme != scheme.name);
        list.push(Applied {
            scheme: scheme.name,
            kind: scheme.kind,
            credential,
            tokens,
        });
        self.credentials = Arc::new(list);
        self
    }

    /// Reads the credentials of every scheme in `schemes` from the environment (see
    /// [`SecurityScheme::env_vars`]); schemes without variables are left out. The error names
    /// a variable that is missing, never a value.
    pub fn with_credentials_from_env(
        mut self,
        service: &str,
        schemes: &[SecurityScheme],
    ) -> Result<Self, String> {
        for scheme in schemes {
            if let Some(credential) = Credential::from_env(service, scheme)? {
                self = self.with_credential(scheme, credential);
            }
        }
        Ok(self)
    }

    /// The schemes credentials were given for.
    pub fn credential_schemes(&self) -> Vec<&'static str> {
        self.credentials.iter().map(|c| c.scheme).collect()
    }

    /// Sends request bodies in the first of `media_types` that an operation offers, instead of
    /// its default (JSON when offered): e.g. `["application/x-www-form-urlencoded"]` for a
    /// server that reads forms better than JSON.
    pub fn with_media_types<S: Into<String>>(
        mut self,
        media_types: impl IntoIterator<Item = S>,
    ) -> Self {
        self.media_types = media_types.into_iter().map(Into::into).collect();
        self
    }

    /// Sends idempotency keys in this header instead of the default `Idempotency-Key`.
    pub fn with_idempotency_header(mut self, name: &str) -> Result<Self, TaskError> {
        self.idempotency_header = HeaderName::try_from(name)
            .map_err(|err| TaskError::permanent(format!("invalid header name `{name}`: {err}")))?;
        Ok(self)
    }

    /// Runs `operation`, retrying transient failures by the operation's retry policy (or the
    /// client's, when set).
    pub async fn execute<T: HttpOperation>(&self, operation: &T) -> Result<T::Output, TaskError> {
        self.execute_with(operation, &CallOptions::default()).await
    }

    /// Runs `operation` with per-call options.
    pub async fn execute_with<T: HttpOperation>(
        &self,
        operation: &T,
        options: &CallOptions,
    ) -> Result<T::Output, TaskError> {
        let policy = options
            .retry_policy
            .clone()
            .or_else(|| self.retry_policy.clone())
            .unwrap_or_else(T::retry_policy);
        let key = options
            .idempotency_key
            .clone()
            .or_else(|| needs_key::<T>().then(|| uuid::Uuid::new_v4().to_string()));
        let mut attempt = 1;
        loop {
            match self
                .attempt_inner(operation, key.as_deref(), &options.media_types)
                .await
            {
                Ok(output) => return Ok(output),
                Err(error) => match policy.next_delay(attempt, &error) {
                    Some(delay) => {
                        tracing::debug!(
                            service = T::SERVICE,
                            operation = T::NAME,
                            attempt,
                            ?delay,
                            %error,
                            "retrying"
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }

    /// Makes one attempt, without retrying, with the options' idempotency key: for a caller that
    /// retries by itself, such as a durable worker.
    pub async fn attempt_with<T: HttpOperation>(
        &self,
        operation: &T,
        options: &CallOptions,
    ) -> Result<T::Output, TaskError> {
        self.attempt_inner(
            operation,
            options.idempotency_key.as_deref(),
            &options.media_types,
        )
        .await
    }

    /// Makes one attempt, without retrying: for a caller that retries by itself, such as a
    /// durable worker. A non-idempotent operation sends `idempotency_key` when given.
    pub async fn attempt<T: HttpOperation>(
        &self,
        operation: &T,
        idempotency_key: Option<&str>,
    ) -> Result<T::Output, TaskError> {
        self.attempt_inner(operation, idempotency_key, &[]).await
    }

    /// One attempt, with `media_types` preferred to the client's when not empty.
    async fn attempt_inner<T: HttpOperation>(
        &self,
        operation: &T,
        idempotency_key: Option<&str>,
        media_types: &[String],
    ) -> Result<T::Output, TaskError> {
        let preferred = if media_types.is_empty() {
            &self.media_types
        } else {
            media_types
        };
        let mut parts = RequestParts {
            preferred: preferred.to_vec(),
            ..RequestParts::default()
        };
        operation.build(&mut parts)?;
        let key = idempotency_key.filter(|_| needs_key::<T>());
        let header = match T::IDEMPOTENCY_HEADER {
            Some(name) => HeaderName::try_from(name).map_err(|err| {
                TaskError::permanent(format!("invalid header name `{name}`: {err}"))
            })?,
            None => self.idempotency_header.clone(),
        };
        let chosen = self.security_for(T::SECURITY);
        let mut refused: Option<Secret> = None;
        loop {
            let mut parts = parts.clone();
            let token = self
                .authorize(&chosen, &mut parts, refused.as_ref())
                .await?;
            let request = self.request(
                T::METHOD,
                parts,
                key.map(|k| (header.clone(), k)),
                T::ACCEPT,
            )?;
            let response = match self.http.execute(request).await {
                Ok(response) => response,
                Err(err) => {
                    record::http_response(T::SERVICE, T::NAME, None);
                    return Err(transport_error(err));
                }
            };
            let status = response.status();
            record::http_response(T::SERVICE, T::NAME, Some(status.as_u16()));
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            // A refused OAuth 2 token may have been revoked early: fetch a new one, once.
            if status == StatusCode::UNAUTHORIZED
                && refused.is_none()
                && let Some(token) = token
            {
                tracing::debug!(
                    service = T::SERVICE,
                    operation = T::NAME,
                    "401 with a cached OAuth 2 token: fetching a new one"
                );
                refused = Some(token);
                continue;
            }
            let retry_after = retry_after(response.headers());
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let body = response.bytes().await.map_err(transport_error)?;
            if status.is_success() {
                return T::decode(status.as_u16(), body.clone()).map_err(|err| {
                    let err = match content_type.as_deref() {
                        Some(found) if !accepts(T::ACCEPT, found) => {
                            unexpected_content_type(status.as_u16(), found, T::ACCEPT)
                        }
                        _ => err,
                    };
                    err.with_response(status.as_u16(), String::from_utf8_lossy(&body))
                });
            }
            return Err(status_error(status, retry_after, &body));
        }
    }

    /// The credentials of the first alternative of `security` that has all of them; none when
    /// the operation asks for none or no alternative is complete.
    fn security_for(&self, security: &[&[&str]]) -> Vec<&Applied> {
        for alternative in security {
            let found: Vec<&Applied> = alternative
                .iter()
                .filter_map(|name| self.credentials.iter().find(|c| c.scheme == *name))
                .collect();
            if found.len() == alternative.len() {
                return found;
            }
        }
        Vec::new()
    }

    /// Adds the credentials to the request; returns the OAuth 2 token used, if any.
    async fn authorize(
        &self,
        chosen: &[&Applied],
        parts: &mut RequestParts,
        refused: Option<&Secret>,
    ) -> Result<Option<Secret>, TaskError> {
        let mut used_token = None;
        for applied in chosen {
            match (&applied.credential, applied.kind) {
                (Credential::ApiKey(key), SchemeKind::ApiKey { location, name }) => {
                    match location {
                        KeyLocation::Header => {
                            parts.secret_headers.push((name.to_owned(), key.clone()))
                        }
                        KeyLocation::Query => parts.query(name, key.expose())?,
                        KeyLocation::Cookie => parts.cookie(name, key.expose())?,
                    }
                }
                (Credential::ApiKey(key), _) => {
                    parts
                        .secret_headers
                        .push(("authorization".into(), key.clone()));
                }
                (Credential::Basic { user, password }, _) => {
                    let encoded = BASE64_STANDARD.encode(format!("{user}:{}", password.expose()));
                    parts.secret_headers.push((
                        "authorization".into(),
                        Secret::new(format!("Basic {encoded}")),
                    ));
                }
                (Credential::Bearer(token), _) => {
                    parts.secret_headers.push((
                        "authorization".into(),
                        Secret::new(format!("Bearer {}", token.expose())),
                    ));
                }
                (credential @ Credential::ClientCredentials { .. }, _) => {
                    let cache = applied.tokens.as_ref().ok_or_else(|| {
                        TaskError::permanent(format!(
                            "security scheme `{}` has no token cache",
                            applied.scheme
                        ))
                    })?;
                    let token = cache
                        .token(
                            &self.http,
                            self.timeout,
                            applied.scheme,
                            credential,
                            refused,
                        )
                        .await?;
                    parts.secret_headers.push((
                        "authorization".into(),
                        Secret::new(format!("Bearer {}", token.expose())),
                    ));
                    used_token = Some(token);
                }
            }
        }
        Ok(used_token)
    }

    fn request(
        &self,
        method: &str,
        parts: RequestParts,
        idempotency_key: Option<(HeaderName, &str)>,
        accept: &[&str],
    ) -> Result<reqwest::Request, TaskError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| TaskError::permanent(format!("invalid HTTP method `{method}`")))?;
        let url = format!("{}{}", self.base_url, parts.path);
        let query = parts.query_string();
        // The query may hold an API key: errors name the URL without it.
        let full = if query.is_empty() {
            url.clone()
        } else {
            format!("{url}?{query}")
        };
        let mut builder = self
            .http
            .request(method, &full)
            .timeout(self.timeout)
            .headers(self.headers.clone());
        for (name, value) in &parts.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !parts.cookies.is_empty() {
            builder = builder.header(COOKIE, parts.cookies.join("; "));
        }
        // The operation's media types, unless the caller asked for others.
        let accept_given = self.headers.contains_key(ACCEPT)
            || parts
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("accept"));
        if !accept.is_empty() && !accept_given {
            builder = builder.header(ACCEPT, accept.join(", "));
        }
        if let Some((header, key)) = idempotency_key {
            builder = builder.header(header, key);
        }
        // The attempt's span, so the called API's trace joins the workflow's.
        if let Some(parent) = trace::traceparent(&tracing::Span::current()) {
            builder = builder.header("traceparent", parent);
        }
        if let Some(body) = parts.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, body.content_type)
                .body(body.bytes);
        }
        let mut request = builder.build().map_err(|err| {
            TaskError::permanent(format!(
                "cannot build the request to {url}: {}",
                error_chain(&err.without_url())
            ))
        })?;
        // A scheme's credentials replace a header of the same name set on the client.
        for (name, secret) in &parts.secret_headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| {
                TaskError::permanent(format!("invalid credential header name `{name}`"))
            })?;
            let mut value = HeaderValue::try_from(secret.expose()).map_err(|_| {
                TaskError::permanent(format!(
                    "the credential for header `{name}` is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            request.headers_mut().insert(name, value);
        }
        Ok(request)
    }
}

/// Whether calls of `T` carry an idempotency key: non-idempotent methods, and operations whose
/// description names a header for it.
fn needs_key<T: HttpOperation>() -> bool {
    !T::IDEMPOTENT || T::IDEMPOTENCY_HEADER.is_some()
}

/// Connection failures and timeouts are retryable; a request that cannot be built is not.
fn transport_error(err: reqwest::Error) -> TaskError {
    // The URL may carry an API key in its query: it is left out of the message.
    let err = err.without_url();
    let detail = error_chain(&err);
    if err.is_builder() {
        TaskError::permanent(format!("invalid request: {detail}"))
    } else if err.is_timeout() {
        TaskError::timed_out(format!("timed out: {detail}"))
    } else if err.is_connect() {
        TaskError::retryable(format!("cannot connect: {detail}"))
    } else {
        TaskError::retryable(format!("transport error: {detail}"))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 408, 429 and 5xx are retryable; every other failure status is permanent.
fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> TaskError {
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    let message = status.to_string();
    let error = if retryable {
        TaskError::retryable(message)
    } else {
        TaskError::permanent(message)
    };
    let error = error.with_response(status.as_u16(), String::from_utf8_lossy(body));
    match retry_after {
        Some(delay) if retryable => error.with_retry_after(delay),
        _ => error,
    }
}

/// Whether a response of media type `found` is one of `accept` (the operation's `ACCEPT`):
/// the same type, a wildcard that covers it, or two JSON types. Everything is accepted when
/// the operation lists nothing.
fn accepts(accept: &[&str], found: &str) -> bool {
    fn essence(media_type: &str) -> String {
        media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
    fn is_json(essence: &str) -> bool {
        essence.ends_with("/json") || essence.ends_with("+json")
    }
    let found = essence(found);
    accept.is_empty()
        || accept.iter().any(|wanted| {
            let wanted = essence(wanted);
            wanted == found
                || wanted == "*/*"
                || wanted
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('/') && found.starts_with(prefix))
                || (is_json(&wanted) && is_json(&found))
        })
}

/// A successful response whose body is in a media type the operation does not read.
fn unexpected_content_type(status: u16, found: &str, accept: &[&str]) -> TaskError {
    let expected: Vec<String> = accept.iter().map(|m| format!("`{m}`")).collect();
    TaskError::permanent(format!(
        "the API answered {status} with a body of content type `{}`, but this operation reads {} (the media types its description gives)",
        found.trim(),
        expected.join(", ")
    ))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_http_semantics() {
        for code in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(status_error(status, None, b"").is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            let err = status_error(status, Some(Duration::from_secs(1)), b"nope");
            assert!(!err.is_retryable(), "{code}");
            assert_eq!(err.status(), Some(code));
            assert_eq!(err.body(), Some("nope"));
            assert_eq!(err.retry_after(), None);
        }
    }

    #[test]
    fn content_types_match_the_accepted_types_wildcards_and_json_kin() {
        let json = ["application/json"];
        assert!(accepts(&json, "application/json; charset=utf-8"));
        assert!(accepts(&json, "Application/Problem+JSON"));
        assert!(!accepts(&json, "application/xml"));
        assert!(!accepts(&json, "text/plain"));
        assert!(accepts(&["text/*"], "text/csv"));
        assert!(!accepts(&["text/*"], "textile/x"));
        assert!(accepts(&["application/xml", "*/*"], "image/png"));
        assert!(accepts(&[], "anything/at-all"));
        let err = unexpected_content_type(200, "application/xml", &json);
        assert!(!err.is_retryable());
        assert_eq!(
            err.message(),
            "the API answered 200 with a body of content type `application/xml`, but this operation reads `application/json` (the media types its description gives)"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        headers.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let delay = retry_after(&headers).unwrap();
        assert!(
            delay > Duration::from_secs(100) && delay <= Duration::from_secs(120),
            "{delay:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn basic_auth_is_base64_of_user_and_password() {
        let client = HttpClient::new("http://localhost")
            .with_basic_auth("Aladdin", "open sesame")
            .unwrap();
        let value = client.headers.get("authorization").unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(value.is_sensitive());
    }

    #[test]
    fn debug_never_shows_credentials() {
        let client = HttpClient::new("http://localhost/")
            .with_bearer_token("s3cret")
            .unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(client.base_url(), "http://localhost");
    }
}
