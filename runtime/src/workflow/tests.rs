//! Replay tests from canned histories: build a history, replay the workflow, check the commands
//! that come out.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::engine::{Activation, Outcome, ParkReason, activate};
use super::replay::{RecordedHistory, ReplayError};
use super::*;
use crate::{RetryPolicy, Task, TaskError};

/// A task of the payments service, shared by the engine's tests.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Charge {
    pub(super) cents: u64,
}

impl Task for Charge {
    type Output = String;
    const SERVICE: &'static str = "payments";
    const NAME: &'static str = "charge";
    const IDEMPOTENT: bool = false;
}

#[derive(Debug, Serialize, Deserialize)]
struct SendMail {
    to: String,
}

impl Task for SendMail {
    type Output = ();
    const SERVICE: &'static str = "mail";
    const NAME: &'static str = "send";
    const IDEMPOTENT: bool = false;
}

const T0: i64 = 1_800_000_000_000;

/// A history under construction: events one second apart.
struct History(Vec<HistoryEvent>);

impl History {
    fn start(input: Value) -> Self {
        Self(vec![HistoryEvent {
            at: T0,
            event: Event::WorkflowStarted {
                name: "test".into(),
                version: 1,
                input,
                clock: Clock::Real,
                trace: None,
                run: 0,
                first_seq: 0,
                run_timeout_ms: None,
            },
        }])
    }

    /// Appends events recorded together (one commit, one time).
    fn together(mut self, events: Vec<Event>) -> Self {
        let at = T0 + 1000 * self.0.len() as i64;
        self.0
            .extend(events.into_iter().map(|event| HistoryEvent { at, event }));
        self
    }

    fn then(mut self, event: Event) -> Self {
        let at = T0 + 1000 * self.0.len() as i64;
        self.0.push(HistoryEvent { at, event });
        self
    }

    /// Appends the new events of an activation, as the driver would.
    fn record(mut self, activation: &Activation) -> Self {
        for event in &activation.new_events {
            self = self.then(event.clone());
        }
        self
    }

    fn completed(self, seq: u32, output: Value) -> Self {
        self.then(Event::TaskCompleted { seq, output })
    }
}

fn scheduled(seq: u32, service: &str, name: &str, input: Value) -> Event {
    Event::TaskScheduled {
        seq,
        service: service.into(),
        name: name.into(),
        input,
        retry_policy: RetryPolicy::default(),
    }
}

/// `f` registered as the workflow `test`, version 1.
pub(super) fn workflow<F, Fut, I, O>(f: F) -> std::sync::Arc<dyn super::engine::WorkflowFn>
where
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<O, WorkflowError>> + 'static,
    I: serde::de::DeserializeOwned + 'static,
    O: Serialize + 'static,
{
    let mut workflows = Workflows::new();
    workflows.register("test", 1, f);
    workflows.get("test", 1).unwrap()
}

fn run<F, Fut, I, O>(f: F, history: &History) -> Activation
where
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<O, WorkflowError>> + 'static,
    I: serde::de::DeserializeOwned + 'static,
    O: Serialize + 'static,
{
    activate(workflow(f).as_ref(), "wf-1", &history.0)
}

async fn two_steps(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    let receipt = ctx.call(&Charge { cents }).await?;
    ctx.call(&SendMail {
        to: format!("receipt {receipt}"),
    })
    .await?;
    Ok(receipt)
}

#[test]
fn sequential_calls_go_out_one_at_a_time_and_replay_from_history() {
    let history = History::start(json!(500));
    let first = run(two_steps, &history);
    assert_eq!(first.outcome, Outcome::Running);
    assert_eq!(
        first.new_events,
        [scheduled(0, "payments", "charge", json!({"cents": 500}))]
    );

    let history = history.record(&first).completed(0, json!("r-1"));
    let second = run(two_steps, &history);
    assert_eq!(
        second.new_events,
        [scheduled(1, "mail", "send", json!({"to": "receipt r-1"}))]
    );

    let history = history.record(&second).completed(1, Value::Null);
    let last = run(two_steps, &history);
    assert_eq!(last.outcome, Outcome::Finished);
    assert_eq!(
        last.new_events,
        [Event::WorkflowCompleted {
            output: json!("r-1")
        }]
    );
}

#[test]
fn a_failed_task_reaches_the_workflow_as_a_typed_error() {
    async fn handles(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        match ctx.call(&Charge { cents: 1 }).await {
            Ok(receipt) => Ok(receipt),
            Err(err) if err.status() == Some(402) => {
                Ok(format!("declined: {}", err.body().unwrap_or_default()))
            }
            Err(err) => Err(err.into()),
        }
    }
    let history = History::start(Value::Null)
        .then(scheduled(0, "payments", "charge", json!({"cents": 1})))
        .then(Event::TaskFailed {
            seq: 0,
            error: TaskError::permanent("402 Payment Required").with_response(402, "no funds"),
        });
    let activation = run(handles, &history);
    assert_eq!(
        activation.new_events,
        [Event::WorkflowCompleted {
            output: json!("declined: no funds")
        }]
    );
}

async fn fan_out(ctx: WorkflowContext, _: ()) -> Result<Vec<String>, WorkflowError> {
    let calls = vec![
        ctx.call(&Charge { cents: 1 }),
        ctx.call(&Charge { cents: 2 }),
        ctx.call(&Charge { cents: 3 }),
    ];
    let results = join_all(calls).await;
    results
        .into_iter()
        .map(|r| r.map_err(WorkflowError::from))
        .collect()
}

#[test]
fn join_numbers_commands_in_program_order_and_keeps_output_order() {
    let history = History::start(Value::Null);
    let first = run(fan_out, &history);
    let seqs: Vec<_> = first
        .new_events
        .iter()
        .map(|e| e.command_seq().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(
        first.new_events[2],
        scheduled(2, "payments", "charge", json!({"cents": 3}))
    );

    // Completions arrive out of order; the output keeps the order of the calls.
    let history = history
        .record(&first)
        .completed(2, json!("c"))
        .completed(0, json!("a"));
    assert_eq!(
        run(fan_out, &history),
        Activation {
            new_events: vec![],
            outcome: Outcome::Running,
            answers: Some(std::collections::BTreeMap::new()),
        }
    );
    let history = history.completed(1, json!("b"));
    assert_eq!(
        run(fan_out, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!(["a", "b", "c"])
        }]
    );
}

async fn race(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let timeout = Box::pin(async {
        ctx.sleep(Duration::from_secs(60)).await;
        "timeout".to_owned()
    }) as std::pin::Pin<Box<dyn std::future::Future<Output = String>>>;
    let charge = Box::pin(async {
        ctx.call(&Charge { cents: 9 })
            .await
            .unwrap_or_else(|e| e.to_string())
    });
    let (_, winner) = select(vec![timeout, charge]).await;
    Ok(winner)
}

#[test]
fn select_takes_whichever_the_history_delivered_first() {
    let start = History::start(Value::Null);
    let first = run(race, &start);
    assert_eq!(
        first.new_events[0],
        Event::TimerStarted {
            seq: 0,
            fire_at: T0 + 60_000
        }
    );
    assert_eq!(
        first.new_events[1],
        scheduled(1, "payments", "charge", json!({"cents": 9}))
    );

    let timer_first = start
        .record(&first)
        .then(Event::TimerFired { seq: 0 })
        .completed(1, json!("paid"));
    assert_eq!(
        run(race, &timer_first).new_events,
        [Event::WorkflowCompleted {
            output: json!("timeout")
        }]
    );

    let start = History::start(Value::Null);
    let task_first = start
        .record(&first)
        .completed(1, json!("paid"))
        .then(Event::TimerFired { seq: 0 });
    assert_eq!(
        run(race, &task_first).new_events,
        [Event::WorkflowCompleted {
            output: json!("paid")
        }]
    );
}

#[test]
fn timers_fire_at_the_recorded_time_and_now_follows_the_history() {
    async fn nap(ctx: WorkflowContext, _: ()) -> Result<u64, WorkflowError> {
        ctx.sleep(Duration::from_secs(5)).await;
        Ok(ctx.now().duration_since(UNIX_EPOCH).unwrap().as_secs())
    }
    let history = History::start(Value::Null);
    let first = run(nap, &history);
    assert_eq!(
        first.new_events,
        [Event::TimerStarted {
            seq: 0,
            fire_at: T0 + 5000
        }]
    );
    let history = history.record(&first).then(Event::TimerFired { seq: 0 });
    let fired_at = history.0.last().unwrap().at;
    assert_eq!(
        run(nap, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!(fired_at / 1000)
        }]
    );
}

async fn until_unsubscribed(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.call(&SendMail {
        to: "welcome".into(),
    })
    .await?;
    let reason: String = ctx.signal("unsubscribe").await?;
    Ok(reason)
}

#[test]
fn a_signal_that_arrives_before_the_wait_is_kept_for_it() {
    let history = History::start(Value::Null)
        .then(scheduled(0, "mail", "send", json!({"to": "welcome"})))
        .then(Event::SignalReceived {
            name: "unsubscribe".into(),
            payload: json!("too many mails"),
        })
        .completed(0, Value::Null);
    assert_eq!(
        run(until_unsubscribed, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!("too many mails")
        }]
    );
}

#[test]
fn a_signal_that_arrives_after_the_wait_wakes_it() {
    let history = History::start(Value::Null)
        .then(scheduled(0, "mail", "send", json!({"to": "welcome"})))
        .completed(0, Value::Null);
    assert_eq!(run(until_unsubscribed, &history).outcome, Outcome::Running);
    let history = history.then(Event::SignalReceived {
        name: "other".into(),
        payload: json!(1),
    });
    assert_eq!(
        run(until_unsubscribed, &history).outcome,
        Outcome::Running,
        "another signal's name"
    );
    let history = history.then(Event::SignalReceived {
        name: "unsubscribe".into(),
        payload: json!("moved"),
    });
    assert_eq!(
        run(until_unsubscribed, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!("moved")
        }]
    );
}

#[test]
fn a_child_workflow_gets_a_deterministic_id_and_its_result_comes_back() {
    async fn parent(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let doubled: u32 = ctx.child("double", &21).await?;
        Ok(doubled)
    }
    let history = History::start(Value::Null);
    let first = run(parent, &history);
    assert_eq!(
        first.new_events,
        [Event::ChildStarted {
            seq: 0,
            name: "double".into(),
            workflow_id: "wf-1/0".into(),
            input: json!(21)
        }]
    );
    let history = history.record(&first).then(Event::ChildCompleted {
        seq: 0,
        result: Ok(json!(42)),
    });
    assert_eq!(
        run(parent, &history).new_events,
        [Event::WorkflowCompleted { output: json!(42) }]
    );
    let failed = History::start(Value::Null)
        .record(&first)
        .then(Event::ChildCompleted {
            seq: 0,
            result: Err(WorkflowError::new("overflow")),
        });
    assert_eq!(
        run(parent, &failed).new_events,
        [Event::WorkflowFailed {
            error: WorkflowError::new("overflow")
        }]
    );
}

async fn patched_flow(ctx: WorkflowContext, _: ()) -> Result<&'static str, WorkflowError> {
    if ctx.patched("send-receipt") {
        ctx.call(&SendMail {
            to: "receipt".into(),
        })
        .await?;
        Ok("new")
    } else {
        ctx.call(&Charge { cents: 1 }).await?;
        Ok("old")
    }
}

#[test]
fn patch_markers_keep_old_instances_on_the_old_path() {
    // A new instance records the marker and takes the new path.
    let history = History::start(Value::Null);
    let first = run(patched_flow, &history);
    assert_eq!(
        first.new_events,
        [
            Event::MarkerRecorded {
                seq: 0,
                change_id: "send-receipt".into()
            },
            scheduled(1, "mail", "send", json!({"to": "receipt"}))
        ]
    );
    let history = history.record(&first).completed(1, Value::Null);
    assert_eq!(
        run(patched_flow, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!("new")
        }]
    );

    // An instance that started before the change has no marker and keeps the old path.
    let old =
        History::start(Value::Null).then(scheduled(0, "payments", "charge", json!({"cents": 1})));
    assert_eq!(run(patched_flow, &old).outcome, Outcome::Running);
    let old = old.completed(0, json!("r"));
    assert_eq!(
        run(patched_flow, &old).new_events,
        [Event::WorkflowCompleted {
            output: json!("old")
        }]
    );
}

#[test]
fn a_different_command_at_the_same_position_parks_the_instance() {
    let history = History::start(json!(5)).then(scheduled(0, "mail", "send", json!({"to": "x"})));
    let activation = run(two_steps, &history);
    assert!(
        activation.new_events.is_empty(),
        "nothing is recorded for a parked instance"
    );
    let Outcome::Parked(ParkReason::NonDeterminism(mismatch)) = activation.outcome else {
        panic!("expected non-determinism, got {:?}", activation.outcome);
    };
    assert_eq!(
        mismatch,
        NonDeterminism {
            position: 0,
            expected: "task mail/send".into(),
            found: "task payments/charge".into()
        }
    );
    assert!(
        mismatch
            .to_string()
            .contains("non-determinism at command 0"),
        "{mismatch}"
    );
}

#[test]
fn a_recorded_command_the_code_no_longer_issues_parks_the_instance() {
    async fn one_step(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
        ctx.call(&Charge { cents }).await?;
        ctx.signal::<()>("never").await?;
        Ok(String::new())
    }
    let history = History::start(json!(5))
        .then(scheduled(0, "payments", "charge", json!({"cents": 5})))
        .completed(0, json!("r"))
        .then(scheduled(1, "mail", "send", json!({"to": "receipt r"})));
    let Outcome::Parked(ParkReason::NonDeterminism(mismatch)) = run(one_step, &history).outcome
    else {
        panic!("expected non-determinism");
    };
    assert_eq!((mismatch.position, mismatch.found.as_str()), (1, "nothing"));
}

#[test]
fn a_panicking_workflow_is_parked_with_its_message() {
    async fn boom(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        ctx.call(&SendMail { to: "x".into() }).await?;
        panic!("the ledger is inconsistent");
    }
    let history = History::start(Value::Null)
        .then(scheduled(0, "mail", "send", json!({"to": "x"})))
        .completed(0, Value::Null);
    let activation = run(boom, &history);
    assert_eq!(
        activation.outcome,
        Outcome::Parked(ParkReason::Panic("the ledger is inconsistent".into()))
    );
    assert!(activation.new_events.is_empty());
}

#[test]
fn random_numbers_and_ids_replay_identically_and_differ_between_instances() {
    async fn draws(ctx: WorkflowContext, _: ()) -> Result<(u64, String), WorkflowError> {
        Ok((ctx.random_u64(), ctx.uuid().to_string()))
    }
    let history = History::start(Value::Null);
    let a = run(draws, &history);
    assert_eq!(a, run(draws, &history));
    let mut workflows = Workflows::new();
    workflows.register("test", 1, draws);
    let other = activate(
        workflows.get("test", 1).unwrap().as_ref(),
        "wf-2",
        &history.0,
    );
    assert_ne!(a.new_events, other.new_events);
}

#[test]
fn cancel_ends_the_instance_and_names_the_children_to_cancel() {
    async fn waits_on_child(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        ctx.child::<_, u32>("slow", &()).await?;
        Ok(0)
    }
    let history = History::start(Value::Null)
        .then(Event::ChildStarted {
            seq: 0,
            name: "slow".into(),
            workflow_id: "wf-1/0".into(),
            input: Value::Null,
        })
        .then(Event::CancelRequested {
            reason: "customer left".into(),
        });
    let activation = run(waits_on_child, &history);
    assert_eq!(activation.new_events, [Event::WorkflowCancelled]);
    assert_eq!(
        activation.outcome,
        Outcome::Cancelled {
            children: vec!["wf-1/0".into()]
        }
    );
}

#[test]
fn a_saved_history_replays_against_the_current_code() {
    let history =
        History::start(json!(500)).then(scheduled(0, "payments", "charge", json!({"cents": 500})));
    let recorded = RecordedHistory {
        instance_id: "wf-1".into(),
        events: history.0,
    };
    let dir = std::env::temp_dir().join(format!("codegen-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.json");
    recorded.save(&path).unwrap();
    let loaded = RecordedHistory::load(&path).unwrap();
    assert_eq!(loaded, recorded);

    let mut workflows = Workflows::new();
    workflows.register("test", 1, two_steps);
    assert_eq!(loaded.replay(&workflows).unwrap().outcome, Outcome::Running);

    let mut changed = Workflows::new();
    changed.register("test", 1, |ctx: WorkflowContext, _cents: u64| async move {
        ctx.call(&SendMail { to: "first".into() }).await?;
        Ok::<_, WorkflowError>(())
    });
    assert!(matches!(
        loaded.replay(&changed),
        Err(ReplayError::Parked(ParkReason::NonDeterminism(_)))
    ));
    assert_eq!(
        loaded.replay(&Workflows::new()).unwrap_err().to_string(),
        "workflow `test` version 1 is not registered"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_input_fails_the_workflow_instead_of_panicking() {
    let history = History::start(json!("not a number"));
    let activation = run(two_steps, &history);
    let [Event::WorkflowFailed { error }] = activation.new_events.as_slice() else {
        panic!("{activation:?}");
    };
    assert!(
        error
            .message()
            .starts_with("the workflow input does not decode"),
        "{error}"
    );
}

#[test]
fn a_scaled_clock_speeds_up_now_and_timers_and_stays_with_the_history() {
    async fn a_day(ctx: WorkflowContext, _: ()) -> Result<u64, WorkflowError> {
        ctx.sleep(Duration::from_secs(86_400)).await;
        Ok(ctx.now().duration_since(UNIX_EPOCH).unwrap().as_secs())
    }
    let clock = Clock::Scaled {
        origin: T0,
        factor: 86_400.0,
    };
    let mut history = History::start(Value::Null);
    if let Event::WorkflowStarted { clock: c, .. } = &mut history.0[0].event {
        *c = clock;
    }
    let first = run(a_day, &history);
    assert_eq!(
        first.new_events,
        [Event::TimerStarted {
            seq: 0,
            fire_at: T0 + 86_400_000
        }]
    );
    assert_eq!(
        clock.to_real(T0 + 86_400_000),
        T0 + 1000,
        "a day passes in a second"
    );
    // The timer fires one real second later: the workflow sees the next day.
    let history = history.record(&first).then(Event::TimerFired { seq: 0 });
    let fired = clock.to_workflow(history.0.last().unwrap().at);
    assert_eq!(
        run(a_day, &history).new_events,
        [Event::WorkflowCompleted {
            output: json!(fired / 1000)
        }]
    );
}

async fn charge_within_a_minute(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    match ctx
        .call(&Charge { cents })
        .timeout(Duration::from_secs(60))
        .await
    {
        Ok(receipt) => Ok(receipt?),
        Err(timed_out) => Ok(timed_out.to_string()),
    }
}

#[test]
fn a_timeout_is_a_timer_after_its_call_and_the_first_to_arrive_wins_on_every_replay() {
    let history = History::start(json!(5));
    let first = run(charge_within_a_minute, &history);
    assert_eq!(
        first.new_events,
        [
            scheduled(0, "payments", "charge", json!({"cents": 5})),
            Event::TimerStarted {
                seq: 1,
                fire_at: T0 + 60_000
            }
        ]
    );
    let history = history.record(&first);
    // The timer first: a timeout, and the late result changes nothing.
    let timed_out = History(history.0.clone()).then(Event::TimerFired { seq: 1 });
    let ended = run(charge_within_a_minute, &timed_out);
    assert_eq!(
        ended.new_events,
        [Event::WorkflowCompleted {
            output: json!("timed out after 60s")
        }]
    );
    let late = timed_out.completed(0, json!("r-1"));
    assert_eq!(
        run(charge_within_a_minute, &late).new_events,
        ended.new_events
    );
    // Both recorded together: the result wins.
    let together = history.together(vec![
        Event::TimerFired { seq: 1 },
        Event::TaskCompleted {
            seq: 0,
            output: json!("r-1"),
        },
    ]);
    assert_eq!(
        run(charge_within_a_minute, &together).new_events,
        [Event::WorkflowCompleted {
            output: json!("r-1")
        }]
    );
}

#[test]
fn select2_of_different_output_types_takes_the_first_in_its_list_when_both_are_ready() {
    let wait = |ctx: WorkflowContext, _: ()| async move {
        Ok::<_, WorkflowError>(
            match select2(ctx.sleep(Duration::from_secs(1)), ctx.signal::<u32>("n")).await {
                Either::Left(()) => "timer".to_owned(),
                Either::Right(n) => format!("signal {}", n?),
            },
        )
    };
    let history = History::start(json!(null));
    let first = run(wait, &history);
    let history = history.record(&first);
    let both = History(history.0.clone()).together(vec![
        Event::SignalReceived {
            name: "n".into(),
            payload: json!(7),
        },
        Event::TimerFired { seq: 0 },
    ]);
    assert_eq!(
        run(wait, &both).new_events,
        [Event::WorkflowCompleted {
            output: json!("timer")
        }]
    );
    let signal = history.then(Event::SignalReceived {
        name: "n".into(),
        payload: json!(7),
    });
    assert_eq!(
        run(wait, &signal).new_events,
        [Event::WorkflowCompleted {
            output: json!("signal 7")
        }]
    );
}

#[test]
fn continue_as_new_ends_the_run_with_the_next_input_and_what_it_did_not_take() {
    let looping = |ctx: WorkflowContext, n: u32| async move {
        ctx.signal::<()>("tick").await?;
        ctx.call(&Charge { cents: 1 }).await?;
        ctx.continue_as_new::<_, Result<(), WorkflowError>>(&(n + 1))
            .await
    };
    let history = History::start(json!(1))
        .then(Event::SignalReceived {
            name: "tick".into(),
            payload: json!(null),
        })
        .then(scheduled(0, "payments", "charge", json!({"cents": 1})))
        .then(Event::SignalReceived {
            name: "tick".into(),
            payload: json!(null),
        })
        .completed(0, json!("r"))
        .then(Event::CancelRequested {
            reason: "later".into(),
        });
    let activation = run(looping, &history);
    assert_eq!(activation.new_events, []);
    assert_eq!(
        activation.outcome,
        Outcome::ContinuedAsNew {
            input: json!(2),
            carried: vec![
                Event::SignalReceived {
                    name: "tick".into(),
                    payload: json!(null)
                },
                Event::CancelRequested {
                    reason: "later".into()
                }
            ],
            next_seq: 1,
        }
    );
}

#[test]
fn a_run_that_starts_at_a_later_command_numbers_its_commands_from_there() {
    let mut history = History::start(json!(500));
    if let Event::WorkflowStarted { first_seq, run, .. } = &mut history.0[0].event {
        (*first_seq, *run) = (40, 3);
    }
    let first = run(two_steps, &history);
    assert_eq!(
        first.new_events,
        [scheduled(40, "payments", "charge", json!({"cents": 500}))]
    );
    let history = history.record(&first).completed(40, json!("r-1"));
    assert_eq!(
        run(two_steps, &history).new_events,
        [scheduled(41, "mail", "send", json!({"to": "receipt r-1"}))]
    );
}

#[test]
fn a_task_error_keeps_its_status_and_body_when_converted_with_question_mark() {
    #[derive(Debug, thiserror::Error)]
    #[error("charging failed")]
    struct Charging(#[source] TaskError);
    let direct: WorkflowError = TaskError::permanent("402")
        .with_response(402, "declined")
        .into();
    assert_eq!(direct.status(), Some(402));
    assert_eq!(
        direct.task_error().and_then(TaskError::body),
        Some("declined")
    );
    let wrapped: WorkflowError =
        Charging(TaskError::permanent("402").with_response(402, "declined")).into();
    assert_eq!(wrapped.status(), Some(402));
    assert!(wrapped.message().starts_with("charging failed: "));
    assert_eq!(WorkflowError::new("plain").status(), None);
    let json = serde_json::to_value(&direct).unwrap();
    let back: WorkflowError = serde_json::from_value(json).unwrap();
    assert_eq!(back, direct);
    let old: WorkflowError = serde_json::from_value(json!({"message": "old"})).unwrap();
    assert_eq!(old.message(), "old");
}

#[test]
fn every_activation_answers_the_registered_queries_in_the_state_it_reached() {
    async fn counter(ctx: WorkflowContext, _: Value) -> Result<u32, WorkflowError> {
        let seen = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let count = seen.clone();
        ctx.on_query("seen", move || count.get());
        // A handler may read the context: the answers are taken with the context free.
        let clock = ctx.clone();
        ctx.on_query("now", move || {
            clock.now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
        });
        ctx.on_query("broken", || -> u32 { panic!("a bug in the handler") });
        // A handler that issues a command changes nothing and gets no answer.
        let sneaky = ctx.clone();
        ctx.on_query("sneaky", move || {
            drop(sneaky.sleep(Duration::from_secs(60)));
            1
        });
        loop {
            let more: bool = ctx.signal("tick").await?;
            if !more {
                return Ok(seen.get());
            }
            seen.set(seen.get() + 1);
        }
    }
    let signal = |more: bool| Event::SignalReceived {
        name: "tick".into(),
        payload: json!(more),
    };
    let history = History::start(Value::Null);
    let first = run(counter, &history);
    let answers = first.answers.expect("the workflow ran");
    assert_eq!(answers["seen"], Ok(json!(0)));
    assert_eq!(answers["now"], Ok(json!(T0)));
    let broken = answers["broken"].as_ref().unwrap_err();
    assert!(broken.contains("a bug in the handler"), "{broken}");
    let sneaky = answers["sneaky"].as_ref().unwrap_err();
    assert!(sneaky.contains("a query only reads"), "{sneaky}");
    assert!(first.new_events.is_empty(), "{:?}", first.new_events);

    let history = history.then(signal(true)).then(signal(true));
    let answers = run(counter, &history).answers.unwrap();
    assert_eq!(answers["seen"], Ok(json!(2)));
    assert_eq!(answers["now"], Ok(json!(T0 + 2000)));

    // The run that ends answers as it ended; a history that had ended is not run again.
    let history = history.then(signal(false));
    let last = run(counter, &history);
    assert_eq!(last.answers.as_ref().unwrap()["seen"], Ok(json!(2)));
    let ended = history.record(&last);
    assert_eq!(run(counter, &ended).answers, None);
}
