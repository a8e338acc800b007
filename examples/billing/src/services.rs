//! The service workers of the four generated crates.

use std::time::Duration;

use codegen_runtime::http::HttpClient;
use codegen_runtime::worker::Handlers;

/// How a generated crate registers its handlers.
pub type Register = fn(&mut Handlers, &HttpClient);

/// The four services: name, and how to register its handlers.
pub const SERVICES: [(&str, Register); 4] = [
    (
        "consumption",
        billing_consumption::operations::register_handlers,
    ),
    ("payment", billing_payment::operations::register_handlers),
    ("invoice", billing_invoice::operations::register_handlers),
    ("email", billing_email::operations::register_handlers),
];

/// The runtime service name of a service (`billing_payment` for `payment`).
pub fn service_name(service: &str) -> Option<&'static str> {
    Some(match service {
        "consumption" => billing_consumption::SERVICE,
        "payment" => billing_payment::SERVICE,
        "invoice" => billing_invoice::SERVICE,
        "email" => billing_email::SERVICE,
        _ => return None,
    })
}

/// The handlers of `service`, calling it at `base_url`, giving up on an attempt after `timeout`.
pub fn handlers(service: &str, base_url: &str, timeout: Duration) -> Option<Handlers> {
    let (_, register) = SERVICES.iter().find(|(name, _)| *name == service)?;
    let mut handlers = Handlers::new();
    register(
        &mut handlers,
        &HttpClient::new(base_url).with_timeout(timeout),
    );
    Some(handlers)
}
