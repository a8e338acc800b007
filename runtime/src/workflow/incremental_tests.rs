//! A replay that goes on from where the last activation left it gives what a replay from the
//! start gives: workflows driven the way a worker drives them, with news arriving in random
//! groups, are activated both ways at every step and compared.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::engine::{Activation, Advance, Outcome, Replay, WorkflowFn, activate};
use super::tests::{Charge, workflow};
use super::*;
use crate::TaskError;

/// Fans out, waits for a signal or a timer, calls with a timeout, starts a child, answers a
/// query, and says what it saw.
async fn mixed(ctx: WorkflowContext, n: u64) -> Result<Value, WorkflowError> {
    let seen = std::rc::Rc::new(std::cell::Cell::new(0));
    let answer = seen.clone();
    ctx.on_query("seen", move || answer.get());
    let calls = (0..n).map(|cents| ctx.call(&Charge { cents })).collect();
    let receipts: Vec<Result<String, TaskError>> = join_all(calls).await;
    seen.set(receipts.len());
    let approved = match select2(
        ctx.signal::<bool>("approve"),
        ctx.sleep(Duration::from_secs(60)),
    )
    .await
    {
        Either::Left(approved) => approved.unwrap_or(false),
        Either::Right(()) => false,
    };
    let late = ctx
        .call(&Charge { cents: 1 })
        .timeout(Duration::from_secs(30))
        .await
        .is_err();
    let child: Result<Value, WorkflowError> = ctx.child("sub", &json!(approved)).await;
    let coin = ctx.random_u64() % 2;
    let failed = receipts.iter().filter(|r| r.is_err()).count();
    Ok(json!({
        "failed": failed,
        "approved": approved,
        "late": late,
        "child": child.is_ok(),
        "coin": coin,
    }))
}

/// Loops on signals, continuing as new every third.
async fn looping(ctx: WorkflowContext, round: u64) -> Result<u64, WorkflowError> {
    for _ in 0..3 {
        ctx.signal::<u64>("tick").await?;
        ctx.call(&Charge { cents: round }).await.ok();
    }
    if round < 3 {
        return ctx.continue_as_new(&(round + 1)).await;
    }
    Ok(round)
}

/// What resolves a command the workflow issued, when it comes.
fn resolution(event: &Event, rng: &mut ChaCha8Rng) -> Option<Event> {
    Some(match event {
        Event::TaskScheduled { seq, .. } => {
            if rng.random_bool(0.2) {
                Event::TaskFailed {
                    seq: *seq,
                    error: TaskError::permanent("declined"),
                }
            } else {
                Event::TaskCompleted {
                    seq: *seq,
                    output: json!(format!("r-{seq}")),
                }
            }
        }
        Event::TimerStarted { seq, .. } => Event::TimerFired { seq: *seq },
        Event::ChildStarted { seq, .. } => Event::ChildCompleted {
            seq: *seq,
            result: Ok(json!("done")),
        },
        _ => return None,
    })
}

/// Drives `workflow` with news in random groups, seeded by `seed`, checking at every
/// activation that the replay kept from the last one gives what a replay from the start gives.
fn drive(workflow: &dyn WorkflowFn, input: Value, signal: (&str, Value), seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let id = format!("wf-{seed}");
    let start = |input: Value, run: u32, first_seq: u32, at: i64| HistoryEvent {
        at,
        event: Event::WorkflowStarted {
            name: "test".into(),
            version: 1,
            input,
            clock: Clock::Real,
            trace: None,
            run,
            first_seq,
            run_timeout_ms: None,
        },
    };
    let mut at = 1_800_000_000_000;
    let mut history = vec![start(input, 0, 0, at)];
    let mut kept: Option<(Replay, usize)> = None;
    let mut pending: Vec<Event> = Vec::new();
    for step in 0..200 {
        let fresh = activate(workflow, &id, &history);
        let incremental = match kept.take() {
            None => {
                let mut replay = Replay::start(workflow, &id, &history, false)
                    .unwrap_or_else(|a| panic!("seed {seed}: cannot start: {a:?}"));
                match replay.advance(&history[1..]) {
                    Ok(()) => Some((replay.finish(), replay)),
                    Err(Advance::Ended(activation)) => {
                        assert_eq!(*activation, fresh, "seed {seed}, step {step}");
                        None
                    }
                    Err(Advance::Regroup) => {
                        panic!("seed {seed}: a replay from the start regrouped")
                    }
                }
            }
            Some((mut replay, given)) => match replay.advance(&history[given..]) {
                Ok(()) => Some((replay.finish(), replay)),
                Err(Advance::Ended(activation)) => {
                    assert_eq!(*activation, fresh, "seed {seed}, step {step}");
                    None
                }
                Err(Advance::Regroup) => panic!("seed {seed}, step {step}: news regrouped"),
            },
        };
        let activation: Activation = match incremental {
            Some((activation, replay)) => {
                assert_eq!(activation, fresh, "seed {seed}, step {step}");
                if activation.outcome == Outcome::Running {
                    kept = Some((replay, history.len()));
                }
                activation
            }
            None => fresh,
        };
        // The driver records the commands at the activation's time.
        let at_now = history.last().map_or(at, |e| e.at);
        for event in &activation.new_events {
            pending.extend(resolution(event, &mut rng));
        }
        match activation.outcome {
            Outcome::Running => {
                history.extend(
                    activation
                        .new_events
                        .into_iter()
                        .map(|event| HistoryEvent { at: at_now, event }),
                );
            }
            Outcome::ContinuedAsNew {
                input,
                carried,
                next_seq,
            } => {
                at += 1;
                let run = match &history[0].event {
                    Event::WorkflowStarted { run, .. } => run + 1,
                    _ => unreachable!(),
                };
                history = vec![start(input, run, next_seq, at)];
                history.extend(carried.into_iter().map(|event| HistoryEvent { at, event }));
                // Results of the old run are its own.
                pending.retain(|e| e.result_seq().is_none_or(|seq| seq >= next_seq));
                kept = None;
            }
            _ => return,
        }
        // The next activation's news, recorded at a later time than the last.
        at = at.max(at_now) + 1 + rng.random_range(0..3);
        let mut news = Vec::new();
        let take = rng.random_range(1..=pending.len().max(1));
        for _ in 0..take {
            if pending.is_empty() {
                break;
            }
            let i = rng.random_range(0..pending.len());
            news.push(pending.swap_remove(i));
        }
        if rng.random_bool(0.3) || news.is_empty() {
            news.push(Event::SignalReceived {
                name: signal.0.into(),
                payload: signal.1.clone(),
            });
        }
        history.extend(news.into_iter().map(|event| HistoryEvent { at, event }));
    }
    panic!("seed {seed}: the workflow did not end in 200 activations");
}

#[test]
fn a_kept_replay_gives_what_a_replay_from_the_start_gives() {
    let mixed = workflow(mixed);
    for seed in 0..300 {
        drive(
            mixed.as_ref(),
            json!(seed % 12),
            ("approve", json!(true)),
            seed,
        );
    }
}

#[test]
fn a_kept_replay_follows_runs_that_continue_as_new() {
    let looping = workflow(looping);
    for seed in 0..100 {
        drive(looping.as_ref(), json!(0), ("tick", json!(1)), seed);
    }
}

#[test]
fn news_recorded_at_the_time_of_the_last_group_cannot_follow_a_kept_replay() {
    let mixed = workflow(mixed);
    let at = 1_800_000_000_000;
    let mut history = vec![HistoryEvent {
        at,
        event: Event::WorkflowStarted {
            name: "test".into(),
            version: 1,
            input: json!(1),
            clock: Clock::Real,
            trace: None,
            run: 0,
            first_seq: 0,
            run_timeout_ms: None,
        },
    }];
    let mut replay = Replay::start(mixed.as_ref(), "wf", &history, false).unwrap();
    assert!(replay.advance(&[]).is_ok());
    let first = replay.finish();
    history.extend(
        first
            .new_events
            .into_iter()
            .map(|event| HistoryEvent { at, event }),
    );
    // The first task's result, a second later.
    let given = 1;
    history.push(HistoryEvent {
        at: at + 1,
        event: Event::TaskCompleted {
            seq: 0,
            output: json!("r"),
        },
    });
    assert!(replay.advance(&history[given..]).is_ok());
    let second = replay.finish();
    assert_eq!(second.outcome, Outcome::Running);
    let given = history.len();
    history.extend(
        second
            .new_events
            .into_iter()
            .map(|event| HistoryEvent { at: at + 1, event }),
    );
    // A signal recorded at the very time of that result: a replay from the start delivers both
    // at once, so the kept replay, which has polled after the result alone, cannot follow.
    history.push(HistoryEvent {
        at: at + 1,
        event: Event::SignalReceived {
            name: "approve".into(),
            payload: json!(true),
        },
    });
    assert!(matches!(
        replay.advance(&history[given..]),
        Err(Advance::Regroup)
    ));
}
