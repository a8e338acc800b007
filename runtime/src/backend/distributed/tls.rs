//! TLS to PostgreSQL as libpq's `sslmode` chooses it, on rustls.
//!
//! | `sslmode` | encrypted | the server's certificate is checked |
//! |---|---|---|
//! | `disable` | no | - |
//! | `prefer` (the default) | when the server offers it | no |
//! | `require` | yes | no; with a root certificate, as `verify-ca` (as libpq does) |
//! | `verify-ca` | yes | signed by a root certificate |
//! | `verify-full` | yes | signed by a root certificate and issued for the URL's host |
//!
//! The root certificates are `sslrootcert=PATH` (a PEM file), `sslrootcert=system` (the
//! operating system's store, as libpq 16 reads it), else `~/.postgresql/root.crt` when it exists.
//! `sslcert=PATH` and `sslkey=PATH` give a client certificate for servers that ask for one.
//! The handshake offers TLS 1.2 and 1.3 only; SCRAM's channel binding uses the connection's
//! certificate when the server offers it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::backend::BackendError;

/// How a connection is secured, read from the URL's `ssl*` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    mode: SslMode,
    root: Option<Root>,
    client: Option<(PathBuf, PathBuf)>,
}

/// libpq's `sslmode` values (`allow`, which tries plain text first, is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    File(PathBuf),
    System,
}

/// The URL parameters this module reads (tokio-postgres reads the rest).
const PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsSettings {
    /// Takes the TLS parameters out of a libpq URL; returns them and the URL without them.
    pub(crate) fn split(url: &str) -> Result<(Self, String), BackendError> {
        let invalid = |message: String| BackendError::Invalid(message);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root = None;
        let mut cert = None;
        let mut key = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !PARAMETERS.contains(&name) {
                rest.push(pair);
                continue;
            }
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned();
            match name {
                "sslmode" => {
                    mode = Some(match value.as_str() {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        "allow" => return Err(invalid(
                            "sslmode=allow is not supported (it tries without TLS first): use prefer, require, verify-ca or verify-full".to_owned(),
                        )),
                        other => return Err(invalid(format!(
                            "sslmode={other} is not an sslmode: use disable, prefer, require, verify-ca or verify-full"
                        ))),
                    });
                }
                "sslrootcert" if value == "system" => root = Some(Root::System),
                "sslrootcert" => root = Some(Root::File(PathBuf::from(value))),
                "sslcert" => cert = Some(PathBuf::from(value)),
                _ => key = Some(PathBuf::from(value)),
            }
        }
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "a client certificate needs both sslcert=PATH and sslkey=PATH".to_owned(),
                ));
            }
        };
        let mode = mode.unwrap_or(SslMode::Prefer);
        if root == Some(Root::System) && matches!(mode, SslMode::Disable | SslMode::Prefer) {
            return Err(invalid(format!(
                "sslrootcert=system needs sslmode=verify-full (or verify-ca), not {}",
                mode.name()
            )));
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Ok((Self { mode, root, client }, url))
    }

    /// The mode tokio-postgres negotiates with: whether to ask for TLS and whether to insist.
    pub(crate) fn negotiation(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// The connector: certificates read and checked now, so that a wrong path fails at start.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, BackendError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, self.roots()?) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(Unverified(provider.clone()))
            }
            (SslMode::Require | SslMode::VerifyCa, Some(roots)) => {
                Arc::new(AnyName(webpki(roots, &provider)?))
            }
            (SslMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
            (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => {
                return Err(BackendError::Invalid(format!(
                    "sslmode={} needs the server's CA certificate: add sslrootcert=PATH (a PEM file) or sslrootcert=system to the backend URL",
                    mode.name()
                )));
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BackendError::Invalid(format!("TLS to PostgreSQL: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    BackendError::Invalid(format!(
                        "sslkey `{}`: no private key read ({e})",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    BackendError::Invalid(format!(
                        "sslcert `{}` and its key do not make a client certificate: {e}",
                        cert.display()
                    ))
                })?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The root certificates the mode checks against, when it checks.
    fn roots(&self) -> Result<Option<RootCertStore>, BackendError> {
        if matches!(self.mode, SslMode::Disable | SslMode::Prefer) {
            return Ok(None);
        }
        let mut store = RootCertStore::empty();
        match &self.root {
            Some(Root::System) => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(BackendError::Invalid(format!(
                        "sslrootcert=system: the system's certificate store has no usable certificate ({} errors reading it)",
                        found.errors.len()
                    )));
                }
            }
            Some(Root::File(path)) => add(&mut store, path)?,
            None => {
                let default = std::env::var_os("HOME")
                    .map(|home| Path::new(&home).join(".postgresql/root.crt"))
                    .filter(|path| path.is_file());
                match default {
                    Some(path) => add(&mut store, &path)?,
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(store))
    }
}

impl SslMode {
    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, BackendError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        BackendError::Invalid(format!(
            "{what} `{}`: cannot read certificates from it ({e})",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(BackendError::Invalid(format!(
            "{what} `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn add(store: &mut RootCertStore, path: &Path) -> Result<(), BackendError> {
    for cert in certificates(path, "sslrootcert")? {
        store.add(cert).map_err(|e| {
            BackendError::Invalid(format!(
                "sslrootcert `{}`: a certificate in it is not a usable CA certificate ({e})",
                path.display()
            ))
        })?;
    }
    Ok(())
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, BackendError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| BackendError::Invalid(format!("TLS to PostgreSQL: {e}")))
}

/// `verify-ca`: the chain must lead to a root; the name it was issued for is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name, so a wrong name means a good chain.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the certificate taken as it
/// comes (the handshake's signatures are still checked), as libpq does in these modes.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(TlsSettings, String), String> {
        TlsSettings::split(url).map_err(|e| e.to_string())
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_is_kept_in_order() {
        let (tls, rest) = split(
            "postgres://app@db/flows?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://app@db/flows?application_name=a&connect_timeout=5"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root, Some(Root::File(PathBuf::from("/etc/ca.pem"))));
        let (tls, rest) = split("postgres://app@db/flows").unwrap();
        assert_eq!(rest, "postgres://app@db/flows");
        assert_eq!(tls.mode, SslMode::Prefer, "libpq's default");
        assert_eq!(tls.negotiation(), tokio_postgres::config::SslMode::Prefer);
        let (tls, _) = split("postgres://db/f?sslmode=verify-ca").unwrap();
        assert_eq!(tls.negotiation(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn wrong_tls_parameters_say_what_to_write() {
        let err = split("postgres://db/f?sslmode=strict").unwrap_err();
        assert!(err.contains("sslmode=strict is not an sslmode"), "{err}");
        let err = split("postgres://db/f?sslmode=allow").unwrap_err();
        assert!(err.contains("use prefer"), "{err}");
        let err = split("postgres://db/f?sslcert=/c.pem").unwrap_err();
        assert!(err.contains("sslkey=PATH"), "{err}");
        let err = split("postgres://db/f?sslrootcert=system").unwrap_err();
        assert!(err.contains("needs sslmode=verify-full"), "{err}");
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_that_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        // Without sslrootcert, libpq's default file counts when it exists.
        let has_default = std::env::var_os("HOME")
            .is_some_and(|home| Path::new(&home).join(".postgresql/root.crt").exists());
        if !has_default {
            let (tls, _) = split("postgres://db/f?sslmode=verify-full").unwrap();
            let err = tls.connector().map(|_| ()).unwrap_err().to_string();
            assert!(err.contains("add sslrootcert=PATH"), "{err}");
        }
        let missing = dir.path().join("missing.pem");
        let (tls, _) = split(&format!(
            "postgres://db/f?sslmode=verify-ca&sslrootcert={}",
            missing.display()
        ))
        .unwrap();
        let err = tls.connector().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let (tls, _) = split(&format!(
            "postgres://db/f?sslmode=require&sslrootcert={}",
            empty.display()
        ))
        .unwrap();
        let err = tls.connector().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        // Modes that do not verify need no certificate.
        let (tls, _) = split("postgres://db/f?sslmode=require").unwrap();
        assert!(tls.connector().is_ok());
    }
}
