//! The thread a workflow worker's activations run on, which keeps each running instance's
//! replay between activations.
//!
//! An activation used to replay the instance's history from the start: a workflow that fans
//! out 250 tasks and is woken 100 times polled its 250 futures 100 times on each, and copied the
//! whole history each time. Here the replay of an instance stays where its last activation left
//! it, and the next takes only the events recorded since ([`Replay::advance`]); replaying from
//! the start stays the way back (another worker, a restart, a conflict), and gives the same
//! activation (the engine's tests check that).
//!
//! A replay holds the workflow function's future, which is not `Send` (a workflow keeps its
//! state in `Rc`s), so replays live on one thread of their own, and the worker sends it its
//! requests a round at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::telemetry::record;
use crate::workflow::HistoryEvent;
use crate::workflow::engine::{Activation, Advance, Replay, WorkflowFn};

/// Replays kept at most; past it the thread starts afresh (each instance then replays from the
/// start once).
pub(super) const KEPT_REPLAYS: usize = 10_000;

/// What to replay of one instance.
pub(super) struct Request {
    /// The instance.
    pub(super) id: String,
    /// The workflow function, at the instance's version.
    pub(super) workflow: Arc<dyn WorkflowFn>,
    /// The workflow's name, for metrics.
    pub(super) name: String,
    /// The whole history when `fresh`; else the events recorded after those the instance's kept
    /// replay was given.
    pub(super) events: Vec<HistoryEvent>,
    /// Replay from the start (what is kept of the instance is dropped).
    pub(super) fresh: bool,
    /// The length of the whole history, for metrics.
    pub(super) history_len: usize,
    /// The activation's span.
    pub(super) span: tracing::Span,
}

/// The answer to a [`Request`].
pub(super) enum Reply {
    /// What the workflow does next. When its outcome is running, the thread keeps the replay.
    Activation(Activation),
    /// The thread keeps no replay of the instance that can take these events: send the whole
    /// history.
    Fresh,
}

type Job = (Vec<Request>, oneshot::Sender<Vec<Reply>>);

/// The replay thread of one worker; it ends when this is dropped.
pub(super) struct Replayer {
    jobs: mpsc::Sender<Job>,
}

impl Replayer {
    /// Starts the thread.
    pub(super) fn start() -> Self {
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("codegen-replay".to_owned())
            .spawn(move || serve(&inbox))
            .expect("the replay thread starts");
        Self { jobs }
    }

    /// Runs `requests`, in order, and answers each.
    pub(super) async fn activate(&self, requests: Vec<Request>) -> Vec<Reply> {
        if requests.is_empty() {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((requests, reply))
            .expect("the replay thread runs while its worker does");
        answer
            .await
            .expect("the replay thread answers every request")
    }
}

/// The thread's loop: the replays it keeps, by instance.
fn serve(inbox: &mpsc::Receiver<Job>) {
    let mut kept: HashMap<String, Replay> = HashMap::new();
    while let Ok((requests, reply)) = inbox.recv() {
        let replies = requests
            .into_iter()
            .map(|request| run(&mut kept, request))
            .collect();
        // A worker that stopped waiting (its round was dropped) needs no answer.
        let _ = reply.send(replies);
    }
}

/// Replays one instance: on from its kept replay, or from the start.
fn run(kept: &mut HashMap<String, Replay>, request: Request) -> Reply {
    let Request {
        id,
        workflow,
        name,
        events,
        fresh,
        history_len,
        span,
    } = request;
    let _entered = span.enter();
    let started = Instant::now();
    let replay = if fresh {
        kept.remove(&id);
        match Replay::start(workflow.as_ref(), &id, &events, false) {
            Ok(replay) => Some((replay, 1)),
            Err(activation) => {
                record::activation(&name, started.elapsed(), history_len);
                return Reply::Activation(*activation);
            }
        }
    } else {
        kept.remove(&id).map(|replay| (replay, 0))
    };
    let Some((mut replay, from)) = replay else {
        return Reply::Fresh;
    };
    let activation = match replay.advance(&events[from.min(events.len())..]) {
        Ok(()) => replay.finish(),
        Err(Advance::Ended(activation)) => *activation,
        Err(Advance::Regroup) => return Reply::Fresh,
    };
    record::activation(&name, started.elapsed(), history_len);
    if activation.outcome == crate::workflow::engine::Outcome::Running {
        if kept.len() >= KEPT_REPLAYS {
            kept.clear();
        }
        kept.insert(id, replay);
    }
    Reply::Activation(activation)
}
