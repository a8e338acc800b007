//! Credentials for the security schemes of an API description: API keys, HTTP basic and bearer,
//! and OAuth 2 client credentials with a cached token.
//!
//! Secret values live in [`Secret`], whose `Debug` and `Display` never show them; requests
//! carry them in sensitive headers, and errors and logs name only the scheme.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::TaskError;

/// A security scheme of the API description, as the generated crate lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityScheme {
    /// The scheme's name in the description (`components.securitySchemes`).
    pub name: &'static str,
    /// What it sends.
    pub kind: SchemeKind,
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLocation {
    /// In a header.
    Header,
    /// In the query string.
    Query,
    /// In the `Cookie` header.
    Cookie,
}

/// The kinds of security scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeKind {
    /// `apiKey`: a key sent in the header, query parameter or cookie `name`.
    ApiKey {
        /// Where it goes.
        location: KeyLocation,
        /// The header, parameter or cookie name.
        name: &'static str,
    },
    /// `http` with scheme `basic`.
    Basic,
    /// `http` with scheme `bearer` (or any other scheme), `openIdConnect`, and OAuth 2 flows
    /// other than client credentials: a token the user obtains.
    Bearer,
    /// OAuth 2 with a client credentials flow: the token is fetched from `token_url`.
    OAuth2ClientCredentials {
        /// The token endpoint of the flow.
        token_url: &'static str,
    },
}

impl SecurityScheme {
    /// The environment variables this scheme's credentials are read from, for the service
    /// `service`, with what each holds. See [`env_name`] for the naming.
    pub fn env_vars(&self, service: &str) -> Vec<(String, &'static str)> {
        let var = |part: &str| env_name(service, self.name, part);
        match self.kind {
            SchemeKind::ApiKey { .. } => vec![(var("KEY"), "the API key")],
            SchemeKind::Basic => vec![
                (var("USER"), "the user name for HTTP basic authentication"),
                (var("PASSWORD"), "its password"),
            ],
            SchemeKind::Bearer => vec![(var("TOKEN"), "the bearer token")],
            SchemeKind::OAuth2ClientCredentials { .. } => vec![
                (var("CLIENT_ID"), "the OAuth 2 client id"),
                (var("CLIENT_SECRET"), "its secret"),
                (
                    var("SCOPES"),
                    "optional: the scopes to ask for, separated by spaces",
                ),
                (
                    var("TOKEN_URL"),
                    "optional: a token endpoint instead of the description's",
                ),
                (
                    var("TOKEN"),
                    "optional: a ready token instead of the client credentials",
                ),
            ],
        }
    }
}

/// Whether repeating a request of HTTP method `method` (in upper case) is harmless by HTTP's
/// semantics (RFC 9110, section 9.2.2): GET, HEAD, OPTIONS, TRACE, PUT and DELETE. The generator
/// marks the operations of these methods idempotent; the others get an idempotency key.
pub fn is_idempotent_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// `<SERVICE>_<SCHEME>_<PART>`: the service and scheme names in upper case, every run of
/// characters other than ASCII letters and digits as one `_` (`petstore`, `api_key`, `KEY` ->
/// `PETSTORE_API_KEY_KEY`; `billing_payment`, `oauth`, `CLIENT_ID` ->
/// `BILLING_PAYMENT_OAUTH_CLIENT_ID`).
pub fn env_name(service: &str, scheme: &str, part: &str) -> String {
    let mut out = String::new();
    for word in [service, scheme, part] {
        let mut pending = !out.is_empty();
        for c in word.chars() {
            if c.is_ascii_alphanumeric() {
                if pending {
                    out.push('_');
                    pending = false;
                }
                out.push(c.to_ascii_uppercase());
            } else if !out.is_empty() {
                pending = true;
            }
        }
    }
    out
}

/// A secret string: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The credentials for one security scheme.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API key (`apiKey` schemes).
    ApiKey(Secret),
    /// A user and password (`http` basic).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token sent as `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// OAuth 2 client credentials: a token is fetched from `token_url`, cached, and fetched
    /// again shortly before it expires or when the API answers 401.
    ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The scopes to ask for; none sends no `scope`.
        scopes: Vec<String>,
    },
}

impl Credential {
    /// Reads the credentials of `scheme` from the environment variables named by
    /// [`SecurityScheme::env_vars`]: `Ok(None)` when none of them is set, an error naming the
    /// variable (never its value) when only some are.
    pub fn from_env(service: &str, scheme: &SecurityScheme) -> Result<Option<Self>, String> {
        Self::from_lookup(service, scheme, &mut |name| std::env::var(name).ok())
    }

    /// As [`Credential::from_env`], reading variables through `lookup`.
    pub fn from_lookup(
        service: &str,
        scheme: &SecurityScheme,
        lookup: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let mut get = |part: &str| {
            let name = env_name(service, scheme.name, part);
            (lookup(&name).filter(|v| !v.is_empty()), name)
        };
        Ok(match scheme.kind {
            SchemeKind::ApiKey { .. } => get("KEY").0.map(|k| Self::ApiKey(Secret(k))),
            SchemeKind::Bearer => get("TOKEN").0.map(|t| Self::Bearer(Secret(t))),
            SchemeKind::Basic => match (get("USER"), get("PASSWORD")) {
                ((Some(user), _), (Some(password), _)) => Some(Self::Basic {
                    user,
                    password: Secret(password),
                }),
                ((None, _), (None, _)) => None,
                ((None, missing), _) | (_, (None, missing)) => {
                    return Err(format!(
                        "security scheme `{}`: {missing} is not set",
                        scheme.name
                    ));
                }
            },
            SchemeKind::OAuth2ClientCredentials { token_url } => {
                if let (Some(token), _) = get("TOKEN") {
                    return Ok(Some(Self::Bearer(Secret(token))));
                }
                let url = get("TOKEN_URL").0.unwrap_or_else(|| token_url.to_owned());
                let scopes = get("SCOPES")
                    .0
                    .map(|s| s.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default();
                match (get("CLIENT_ID"), get("CLIENT_SECRET")) {
                    ((Some(client_id), _), (Some(secret), _)) => Some(Self::ClientCredentials {
                        token_url: url,
                        client_id,
                        client_secret: Secret(secret),
                        scopes,
                    }),
                    ((None, _), (None, _)) => None,
                    ((None, missing), _) | (_, (None, missing)) => {
                        return Err(format!(
                            "security scheme `{}`: {missing} is not set",
                            scheme.name
                        ));
                    }
                }
            }
        })
    }
}

/// A credential bound to its scheme, ready to apply to requests.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) scheme: &'static str,
    pub(crate) kind: SchemeKind,
    pub(crate) credential: Credential,
    /// The token cache of a client credentials flow, shared by clones of the client.
    pub(crate) tokens: Option<Arc<TokenCache>>,
}

/// The last token of a client credentials flow.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    /// When to fetch a new one: shortly before the token expires.
    refresh_at: Option<Instant>,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenCache {
    /// The cached token, or a new one from the token endpoint when there is none, it is about
    /// to expire, or `stale` is the token the API just refused. Concurrent callers wait for one
    /// fetch.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        scheme: &str,
        credential: &Credential,
        stale: Option<&Secret>,
    ) -> Result<Secret, TaskError> {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref() {
            let fresh = cached.refresh_at.is_none_or(|at| Instant::now() < at);
            if fresh && stale != Some(&cached.token) {
                return Ok(cached.token.clone());
            }
        }
        let Credential::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scopes,
        } = credential
        else {
            return Err(TaskError::permanent(format!(
                "security scheme `{scheme}` has no client credentials"
            )));
        };
        let fetched = fetch_token(
            http,
            timeout,
            scheme,
            token_url,
            client_id,
            client_secret,
            scopes,
        )
        .await?;
        *current = Some(fetched.clone());
        Ok(fetched.token)
    }
}

/// The client credentials grant (RFC 6749 §4.4), the client authenticated with HTTP basic.
async fn fetch_token(
    http: &reqwest::Client,
    timeout: Duration,
    scheme: &str,
    token_url: &str,
    client_id: &str,
    client_secret: &Secret,
    scopes: &[String],
) -> Result<CachedToken, TaskError> {
    let what = format!("the OAuth 2 token request of security scheme `{scheme}` to {token_url}");
    let form = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !scopes.is_empty() {
            form.append_pair("scope", &scopes.join(" "));
        }
        form.finish()
    };
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = BASE64_STANDARD.encode(format!(
        "{}:{}",
        encode(client_id),
        encode(client_secret.expose())
    ));
    let mut authorization = reqwest::header::HeaderValue::try_from(format!("Basic {basic}"))
        .map_err(|_| TaskError::permanent(format!("{what}: the client id cannot be sent")))?;
    authorization.set_sensitive(true);
    let requested = Instant::now();
    let response = http
        .post(token_url)
        .timeout(timeout)
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(form)
        .send()
        .await
        .map_err(|err| {
            let err = err.without_url();
            if err.is_builder() {
                TaskError::permanent(format!("{what}: {err}"))
            } else if err.is_timeout() {
                TaskError::timed_out(format!("{what} timed out"))
            } else {
                TaskError::retryable(format!("{what} failed: {err}"))
            }
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|err| TaskError::retryable(format!("{what} failed: {}", err.without_url())))?;
    if !status.is_success() {
        let message = format!("{what} was refused: {status}");
        let error = if status.is_server_error() || status.as_u16() == 429 {
            TaskError::retryable(message)
        } else {
            TaskError::permanent(message)
        };
        return Err(error.with_response(status.as_u16(), String::from_utf8_lossy(&body)));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|err| {
        TaskError::permanent(format!(
            "{what}: the answer has no access token ({})",
            err.classify_name()
        ))
    })?;
    // Refresh at 90% of the lifetime, and at least 5 s before the end.
    let refresh_at = parsed.expires_in.map(|secs| {
        let life = Duration::from_secs(secs);
        let margin = (life / 10).max(Duration::from_secs(5)).min(life);
        requested + (life - margin)
    });
    Ok(CachedToken {
        token: Secret(parsed.access_token),
        refresh_at,
    })
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    /// The kind of a JSON error, without the text around it (which may hold the token).
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "no `access_token` string",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_upper_snake_case() {
        assert_eq!(
            env_name("petstore", "api_key", "KEY"),
            "PETSTORE_API_KEY_KEY"
        );
        assert_eq!(
            env_name("billing_payment", "OAuth2 (client)", "CLIENT_ID"),
            "BILLING_PAYMENT_OAUTH2_CLIENT_CLIENT_ID"
        );
    }

    #[test]
    fn partial_credentials_name_the_missing_variable_not_the_values() {
        let scheme = SecurityScheme {
            name: "basicAuth",
            kind: SchemeKind::Basic,
        };
        let err = Credential::from_lookup("shop", &scheme, &mut |name| {
            (name == "SHOP_BASICAUTH_USER").then(|| "hunter2-user".to_owned())
        })
        .unwrap_err();
        assert!(err.contains("SHOP_BASICAUTH_PASSWORD"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let none = Credential::from_lookup("shop", &scheme, &mut |_| None).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let credential = Credential::ClientCredentials {
            token_url: "http://127.0.0.1/token".into(),
            client_id: "id".into(),
            client_secret: Secret::new("hunter2"),
            scopes: vec![],
        };
        let shown = format!("{credential:?} {}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
