//! The billing workflow: every month, while the user is subscribed, charge, invoice and email.
//!
//! Each run bills one month and then continues as new with the count so far, so a
//! subscription that lasts ten years replays a one-month history, never a ten-year one.

use std::time::{Duration, SystemTime};

use billing_consumption::operations::{GetConsumption, GetSubscription};
use billing_email::operations::SendEmail;
use billing_email::types::Email;
use billing_invoice::operations::CreateInvoice;
use billing_invoice::types::InvoiceRequest;
use billing_payment::operations::RequestPayment;
use billing_payment::types::PaymentRequest;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use codegen_runtime::RetryPolicy;
use codegen_runtime::workflow::{Either, WorkflowContext, WorkflowError, Workflows, select2};
use serde::{Deserialize, Serialize};

/// The workflow's registered name.
pub const NAME: &str = "monthly_billing";

/// The signal that ends a subscription.
pub const UNSUBSCRIBE: &str = "unsubscribe";

/// A new subscription: the workflow's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// The user.
    pub user_id: String,
    /// Where invoices go.
    pub email: String,
    /// Stop after this many months (demos and tests); `None` bills until unsubscribed.
    pub months: Option<u32>,
    /// Months billed by the runs before this one (0 for a new subscription).
    #[serde(default)]
    pub billed: u32,
}

/// What a subscription came to: the workflow's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billed {
    /// Months charged, invoiced and emailed.
    pub months: u32,
    /// Why billing stopped: `unsubscribed`, `inactive` or `done`.
    pub ended_by: String,
}

/// Services go down for a while: keep trying, spaced out, rather than give up.
fn patient() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(30)
        .with_initial_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
}

/// Bills `subscription` for the month under way, then continues as new for the next one,
/// until it ends.
pub async fn monthly_billing(
    ctx: WorkflowContext,
    subscription: Subscription,
) -> Result<Billed, WorkflowError> {
    let user_id = subscription.user_id.clone();
    let months = subscription.billed;
    if subscription.months.is_some_and(|limit| months >= limit) {
        return Ok(Billed {
            months,
            ended_by: "done".into(),
        });
    }
    // Wait for the month to end, unless the user unsubscribes first.
    let (month, next) = month_ending_after(ctx.now());
    let unsubscribed = ctx.signal::<()>(UNSUBSCRIBE);
    if let Either::Right(_) = select2(ctx.sleep_until(next), unsubscribed).await {
        return Ok(Billed {
            months,
            ended_by: "unsubscribed".into(),
        });
    }

    let subscribed = ctx
        .call_with(
            &GetSubscription {
                user_id: user_id.clone(),
            },
            patient(),
        )
        .await?;
    if !subscribed.active {
        return Ok(Billed {
            months,
            ended_by: "inactive".into(),
        });
    }
    let query = GetConsumption {
        user_id: user_id.clone(),
        month: month.clone(),
    };
    let consumption = ctx.call_with(&query, patient()).await?;
    let charge = PaymentRequest {
        user_id: user_id.clone(),
        month: month.clone(),
        amount_cents: consumption.amount_cents,
    };
    let payment = ctx
        .call_with(&RequestPayment { body: charge }, patient())
        .await?;
    let invoice = InvoiceRequest {
        user_id: user_id.clone(),
        month: month.clone(),
        amount_cents: consumption.amount_cents,
        payment_id: payment.payment_id.clone(),
    };
    let invoice = ctx
        .call_with(&CreateInvoice { body: invoice }, patient())
        .await?;
    let email = Email {
        to: subscription.email.clone(),
        subject: format!("Your invoice for {month}"),
        text: format!(
            "{} units, {:.2} charged (payment {}, invoice {}).",
            consumption.units,
            consumption.amount_cents as f64 / 100.0,
            payment.payment_id,
            invoice.invoice_id
        ),
    };
    ctx.call_with(&SendEmail { body: email }, patient()).await?;
    // The next month starts a fresh run: the history never grows past one month.
    let next = Subscription {
        billed: months + 1,
        ..subscription
    };
    ctx.continue_as_new(&next).await
}

/// The month under way at `now` (`YYYY-MM`) and the instant it ends.
pub fn month_ending_after(now: SystemTime) -> (String, SystemTime) {
    let now: DateTime<Utc> = now.into();
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month exists");
    let next = first
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (now.format("%Y-%m").to_string(), next.into())
}

/// Registers the workflow, version 1.
pub fn register(workflows: &mut Workflows) {
    workflows.register(NAME, 1, monthly_billing);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_ends_at_the_first_of_the_next() {
        let at = |s: &str| -> SystemTime { s.parse::<DateTime<Utc>>().unwrap().into() };
        let (month, next) = month_ending_after(at("2026-11-26T10:00:00Z"));
        assert_eq!(
            (month.as_str(), next),
            ("2026-11", at("2026-12-01T00:00:00Z"))
        );
        let (month, next) = month_ending_after(at("2026-12-31T23:59:59Z"));
        assert_eq!(
            (month.as_str(), next),
            ("2026-12", at("2027-01-01T00:00:00Z"))
        );
    }
}
