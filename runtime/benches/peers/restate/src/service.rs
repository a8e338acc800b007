//! The Restate service the peer measures: the two workloads and their step.
// The `service` macro adds items of its own beside the impl (the service's client), without
// doc comments.
#![allow(missing_docs)]

use restate_sdk::prelude::*;

/// The service: the two workloads and their step.
pub(crate) struct Bench {
    http: reqwest::Client,
    /// The benchmark's HTTP server.
    url: String,
}

impl Bench {
    /// The service, calling the benchmark's HTTP server at `url`.
    pub(crate) fn new(url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
        }
    }
}

/// One HTTP call, as every step makes it: `GET /ping/{n}`, answered with `n`.
async fn ping(http: &reqwest::Client, url: &str, n: u64) -> Result<u64, HandlerError> {
    let text = http
        .get(format!("{url}/ping/{n}"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text.trim().parse()?)
}

#[service]
impl Bench {
    /// W1: three durable HTTP calls, one after another.
    #[handler]
    async fn three_steps(&self, ctx: Context<'_>, n: u64) -> Result<u64, HandlerError> {
        let a = ctx.run(|| ping(&self.http, &self.url, n)).await?;
        let b = ctx.run(|| ping(&self.http, &self.url, a + 1)).await?;
        Ok(ctx.run(|| ping(&self.http, &self.url, b + 1)).await?)
    }

    /// One durable HTTP call.
    #[handler]
    async fn step(&self, ctx: Context<'_>, n: u64) -> Result<u64, HandlerError> {
        Ok(ctx.run(|| ping(&self.http, &self.url, n)).await?)
    }

    /// W2, as Restate fans out: `n` calls of `step`, awaited together.
    #[handler]
    async fn fan_out(&self, ctx: Context<'_>, n: u64) -> Result<u64, HandlerError> {
        let mut calls = DurableFuturesUnordered::new();
        for i in 0..n {
            calls.push(ctx.service_client::<BenchClient>().step(i).call());
        }
        let mut done = 0;
        while let Some((_, result)) = calls.next().await? {
            result?;
            done += 1;
        }
        Ok(done)
    }

    /// W2 within one invocation: `n` durable HTTP calls, one after another.
    #[handler]
    async fn sequential(&self, ctx: Context<'_>, n: u64) -> Result<u64, HandlerError> {
        for i in 0..n {
            ctx.run(|| ping(&self.http, &self.url, i)).await?;
        }
        Ok(n)
    }
}
