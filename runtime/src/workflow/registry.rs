//! Workflows by name and version.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::engine::{WorkflowFn, WorkflowFuture};
use super::{WorkflowContext, WorkflowError};

struct Typed<F, I, O> {
    f: F,
    types: std::marker::PhantomData<fn(I) -> O>,
}

impl<F, Fut, I, O> WorkflowFn for Typed<F, I, O>
where
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, WorkflowError>> + 'static,
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
{
    fn start(&self, ctx: WorkflowContext, input: Value) -> WorkflowFuture {
        match serde_json::from_value::<I>(input) {
            Ok(input) => {
                let future = (self.f)(ctx, input);
                Box::pin(async move {
                    let output = future.await?;
                    serde_json::to_value(output).map_err(|e| {
                        WorkflowError::new(format!("cannot encode the workflow output: {e}"))
                    })
                })
            }
            Err(e) => Box::pin(std::future::ready(Err(WorkflowError::new(format!(
                "the workflow input does not decode: {e}"
            ))))),
        }
    }
}

/// The workflow functions a worker can run, by name and version.
///
/// A new instance runs the newest version of its workflow; an instance keeps the version it
/// started with, so old versions stay registered while instances of them run.
#[derive(Default, Clone)]
pub struct Workflows {
    by_name: BTreeMap<String, BTreeMap<u32, Arc<dyn WorkflowFn>>>,
}

impl std::fmt::Debug for Workflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: BTreeMap<&String, Vec<&u32>> = self
            .by_name
            .iter()
            .map(|(n, v)| (n, v.keys().collect()))
            .collect();
        f.debug_struct("Workflows")
            .field("versions", &names)
            .finish()
    }
}

impl Workflows {
    /// No workflows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` as version `version` of the workflow `name`.
    pub fn register<F, Fut, I, O>(&mut self, name: &str, version: u32, f: F) -> &mut Self
    where
        F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, WorkflowError>> + 'static,
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
    {
        let typed = Typed {
            f,
            types: std::marker::PhantomData,
        };
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .insert(version, Arc::new(typed));
        self
    }

    /// The newest version of `name`.
    pub fn newest(&self, name: &str) -> Option<(u32, Arc<dyn WorkflowFn>)> {
        self.by_name
            .get(name)?
            .iter()
            .next_back()
            .map(|(v, f)| (*v, f.clone()))
    }

    /// Version `version` of `name`.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<dyn WorkflowFn>> {
        self.by_name.get(name)?.get(&version).cloned()
    }
}
