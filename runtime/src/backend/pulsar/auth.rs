//! Authentication to the broker, as managed Pulsar services issue it: a JWT in a file or an
//! environment variable (StreamNative API keys, DataStax Astra Streaming tokens), or OAuth 2
//! client credentials (StreamNative service accounts: an issuer URL, a key file holding
//! `client_id` and `client_secret`, and an audience).
//!
//! The token is read again at every connection (a file rotated by a secret manager is picked
//! up on the next reconnect) and for every admin API request. An OAuth 2 access token is
//! cached until a minute before it expires.
//!
//! The OAuth 2 flow is written here, in a few dozen lines on the runtime's own HTTP client,
//! rather than taken from the pulsar crate's `auth-oauth2` feature: that feature brings a second
//! HTTP stack built on OpenSSL and puts the token request into its error messages.
//!
//! No token or secret is ever part of a `Debug` output, log line or error: errors name the
//! file, the variable or the issuer, and say what is wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulsar::error::AuthenticationError;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::PulsarAuth;

/// Where tokens come from, shared by the connections and the admin client.
pub(super) struct Credentials {
    auth: PulsarAuth,
    http: reqwest::Client,
    /// The OAuth 2 access token and when to fetch a new one.
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct KeyFile {
    client_id: String,
    client_secret: String,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl Credentials {
    pub(super) fn new(auth: PulsarAuth) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("the OAuth 2 client: {e}"))?;
        Ok(Self {
            auth,
            http,
            cached: Mutex::new(None),
        })
    }

    /// Whether there is anything to authenticate with.
    pub(super) fn enabled(&self) -> bool {
        self.auth != PulsarAuth::None
    }

    /// The token to present now, if any. Errors say where it should have come from.
    pub(super) async fn token(&self) -> Result<Option<String>, String> {
        match &self.auth {
            PulsarAuth::None => Ok(None),
            PulsarAuth::TokenFile(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    format!(
                        "pulsar_token_file `{}`: cannot read it ({e})",
                        file.display()
                    )
                })?;
                let token = text.lines().next().unwrap_or("").trim();
                if token.is_empty() {
                    return Err(format!(
                        "pulsar_token_file `{}` is empty: put the broker's token (a JWT) on its first line",
                        file.display()
                    ));
                }
                Ok(Some(token.to_owned()))
            }
            PulsarAuth::TokenEnv(name) => match std::env::var(name) {
                Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
                _ => Err(format!(
                    "pulsar_token_env: the environment variable `{name}` is not set (or empty): set it to the broker's token"
                )),
            },
            PulsarAuth::OAuth2 {
                issuer_url,
                credentials_file,
                audience,
                scope,
            } => {
                let mut cached = self.cached.lock().await;
                if let Some((token, renew_at)) = &*cached
                    && Instant::now() < *renew_at
                {
                    return Ok(Some(token.clone()));
                }
                let (token, lifetime) = self
                    .fetch(
                        issuer_url,
                        credentials_file,
                        audience.as_deref(),
                        scope.as_deref(),
                    )
                    .await?;
                // Renewed a minute early (or halfway, for short-lived tokens).
                let renew_in = lifetime.map_or(Duration::from_secs(300), |l| {
                    l.saturating_sub(Duration::from_secs(60)).max(l / 2)
                });
                *cached = Some((token.clone(), Instant::now() + renew_in));
                Ok(Some(token))
            }
        }
    }

    /// The client-credentials grant: the token endpoint from the issuer's discovery document,
    /// then a form POST with the key file's id and secret.
    async fn fetch(
        &self,
        issuer_url: &str,
        credentials_file: &std::path::Path,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(String, Option<Duration>), String> {
        let text = std::fs::read_to_string(credentials_file).map_err(|e| {
            format!(
                "pulsar_oauth2_credentials `{}`: cannot read it ({e})",
                credentials_file.display()
            )
        })?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "pulsar_oauth2_credentials `{}`: not a key file with client_id and client_secret ({})",
                credentials_file.display(),
                json_error(&e)
            )
        })?;
        let issuer = issuer_url.trim_end_matches('/');
        let discovery_url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = self
            .get_json(
                self.http.get(&discovery_url),
                "the issuer's discovery document",
            )
            .await
            .map_err(|e| format!("OAuth 2 issuer {issuer}: {e}"))?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", key.client_id.as_str()),
            ("client_secret", key.client_secret.as_str()),
        ];
        if let Some(audience) = audience {
            form.push(("audience", audience));
        }
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response: TokenResponse = self
            .get_json(
                self.http.post(&discovery.token_endpoint).form(&form),
                "a token for the client credentials",
            )
            .await
            .map_err(|e| format!("OAuth 2 issuer {issuer}: {e}"))?;
        Ok((
            response.access_token,
            response.expires_in.map(Duration::from_secs),
        ))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("asking for {what} failed ({})", without_url(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "asking for {what} was answered {status}: check the issuer URL, the key file and the audience"
            ));
        }
        response.json().await.map_err(|e| {
            format!(
                "the answer to asking for {what} does not decode ({})",
                without_url(&e)
            )
        })
    }
}

/// Where and what a JSON error is, without the value it may quote (a secret).
fn json_error(err: &serde_json::Error) -> String {
    let shown = err.to_string();
    if shown.starts_with("missing field") {
        shown
    } else {
        format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        )
    }
}

/// A reqwest error without the URL it carries (a token endpoint's URL may hold a query).
fn without_url(err: &reqwest::Error) -> String {
    let mut err =
        std::error::Error::source(err).map_or_else(|| err.to_string(), ToString::to_string);
    err.truncate(200);
    err
}

/// What a Pulsar client connection authenticates with: the token, as Pulsar's `token` method.
pub(super) struct Connection(pub(super) Arc<Credentials>);

#[async_trait::async_trait]
impl pulsar::authentication::Authentication for Connection {
    fn auth_method_name(&self) -> String {
        "token".to_owned()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        self.0
            .token()
            .await
            .map(drop)
            .map_err(AuthenticationError::Custom)
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        match self.0.token().await {
            Ok(token) => Ok(token.unwrap_or_default().into_bytes()),
            // A token endpoint that does not answer now may later: the client retries.
            Err(err) => Err(AuthenticationError::Retriable(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_comes_from_its_file_each_time_and_a_bad_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "first-token\n").unwrap();
        let credentials = Credentials::new(PulsarAuth::TokenFile(file.clone())).unwrap();
        assert_eq!(
            credentials.token().await.unwrap().as_deref(),
            Some("first-token")
        );
        std::fs::write(&file, "rotated-token\n").unwrap();
        assert_eq!(
            credentials.token().await.unwrap().as_deref(),
            Some("rotated-token")
        );
        std::fs::write(&file, "\n").unwrap();
        let err = credentials.token().await.unwrap_err();
        assert!(err.contains("is empty"), "{err}");
        // Any variable that is set reads as a token; PATH is set wherever tests run.
        let from_env = Credentials::new(PulsarAuth::TokenEnv("PATH".to_owned())).unwrap();
        assert_eq!(
            from_env.token().await.unwrap(),
            Some(std::env::var("PATH").unwrap().trim().to_owned())
        );
        let missing = Credentials::new(PulsarAuth::TokenEnv(
            "CODEGEN_TEST_TOKEN_THAT_IS_NEVER_SET".to_owned(),
        ))
        .unwrap();
        let err = missing.token().await.unwrap_err();
        assert!(
            err.contains("`CODEGEN_TEST_TOKEN_THAT_IS_NEVER_SET` is not set"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_key_file_that_does_not_decode_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.json");
        std::fs::write(&file, r#"{"client_id": "app", "client_sekret": "hunter2"}"#).unwrap();
        let credentials = Credentials::new(PulsarAuth::OAuth2 {
            issuer_url: "http://127.0.0.1:1".to_owned(),
            credentials_file: file.clone(),
            audience: None,
            scope: None,
        })
        .unwrap();
        let err = credentials.token().await.unwrap_err();
        assert!(
            err.contains("not a key file with client_id and client_secret"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
