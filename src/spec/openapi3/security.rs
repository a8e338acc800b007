//! Security schemes: what credentials the generated crate can send.

use openapiv3::{APIKeyLocation, SecurityScheme as Scheme};

use crate::Result;
use crate::error::{Error, pointer_token};
use crate::ir::{ParamLocation, SchemeKind, SecurityScheme};

use super::Reader;

impl Reader<'_> {
    /// `components.securitySchemes`, in spec order. A reference to another scheme is followed;
    /// OAuth 2 without a client credentials flow, OpenID Connect and HTTP schemes other than
    /// basic take a token the user provides.
    pub(super) fn security_schemes(&self) -> Result<Vec<SecurityScheme>> {
        let Some(components) = self.doc.components.as_ref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, scheme) in &components.security_schemes {
            let pointer = format!("#/components/securitySchemes/{}", pointer_token(name));
            let scheme =
                self.component(scheme, "securitySchemes", |c| &c.security_schemes, &pointer)?;
            let (kind, doc) = match scheme {
                Scheme::APIKey {
                    location,
                    name: key,
                    description,
                    ..
                } => {
                    if key.trim().is_empty() {
                        return Err(Error::Invalid {
                            path: self.path.to_owned(),
                            location: format!("{}/name", crate::error::excerpt_pointer(&pointer)),
                            message: "an apiKey scheme needs the name of its header, query parameter or cookie".into(),
                        });
                    }
                    let location = match location {
                        APIKeyLocation::Header => ParamLocation::Header,
                        APIKeyLocation::Query => ParamLocation::Query,
                        APIKeyLocation::Cookie => ParamLocation::Cookie,
                    };
                    let kind = SchemeKind::ApiKey {
                        location,
                        name: key.clone(),
                    };
                    (kind, description)
                }
                Scheme::HTTP {
                    scheme,
                    description,
                    ..
                } => {
                    let kind = if scheme.eq_ignore_ascii_case("basic") {
                        SchemeKind::Basic
                    } else {
                        SchemeKind::Bearer
                    };
                    (kind, description)
                }
                Scheme::OAuth2 {
                    flows, description, ..
                } => {
                    let kind = match &flows.client_credentials {
                        Some(flow) => SchemeKind::OAuth2ClientCredentials {
                            token_url: flow.token_url.clone(),
                        },
                        None => SchemeKind::Bearer,
                    };
                    (kind, description)
                }
                Scheme::OpenIDConnect { description, .. } => (SchemeKind::Bearer, description),
            };
            out.push(SecurityScheme {
                name: name.clone(),
                kind,
                doc: doc.clone(),
            });
        }
        Ok(out)
    }
}
