//! Messages a process sends itself (`backend/local.rs`): held for its own receivers and leased in the
//! store, handed back when the subscription ends; a task's result deferred to the commit that
//! takes it. Two backends on one file stand for two processes.

use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;

use super::*;
use crate::backend::{
    AttemptOutcome, Commit, Delivery, Message, MessageBody, MessageQueue, StateStore, TaskAttempt,
    Topic,
};
use crate::time::now_ms;
use crate::workflow::Event;

fn two(options: SqliteOptions) -> (tempfile::TempDir, SqliteBackend, SqliteBackend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteBackend::open_with(&path, options.clone()).unwrap();
    let b = SqliteBackend::open_with(&path, options).unwrap();
    (dir, a, b)
}

fn tasks() -> Topic {
    Topic::Tasks("billing".to_owned())
}

fn task(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        topic: tasks(),
        key: "i1".to_owned(),
        deliver_at: 0,
        body: MessageBody::Wake,
    }
}

fn result_for(instance: &str) -> Message {
    Message {
        id: format!("{instance}/result/0"),
        topic: Topic::Workflows,
        key: instance.to_owned(),
        deliver_at: 0,
        body: MessageBody::Event {
            event: Event::TaskCompleted {
                seq: 0,
                output: json!("done"),
            },
        },
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.message.id.as_str()).collect()
}

/// Rows of the store, read as another program would.
fn count(backend: &SqliteBackend, sql: &str) -> i64 {
    Connection::open(backend.path())
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Waits until the database thread has run what was queued to it before.
async fn settled(backend: &SqliteBackend) {
    backend.with_conn(|_, _| Ok(())).await.unwrap();
}

#[tokio::test]
async fn a_message_for_a_subscribed_topic_comes_from_memory_leased_in_the_store() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let _subscribed = a.subscribe(&tasks(), 60_000, 8);
    a.send(vec![task("t1")]).await.unwrap();
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE leased_until > 0"),
        1
    );
    // Another process cannot take it: it is this one's.
    assert!(b.receive(&tasks(), 10, 60_000).await.unwrap().is_empty());
    let got = a.receive(&tasks(), 10, 60_000).await.unwrap();
    assert_eq!(ids(&got), ["t1"]);
    a.ack(got.into_iter().map(|d| d.receipt).collect())
        .await
        .unwrap();
    assert_eq!(count(&a, "SELECT COUNT(*) FROM messages"), 0);
}

#[tokio::test]
async fn past_its_capacity_a_subscription_leaves_messages_to_any_receiver() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let _subscribed = a.subscribe(&tasks(), 60_000, 2);
    a.send(vec![task("t1"), task("t2"), task("t3")])
        .await
        .unwrap();
    assert_eq!(ids(&b.receive(&tasks(), 10, 60_000).await.unwrap()), ["t3"]);
    assert_eq!(
        ids(&a.receive(&tasks(), 10, 60_000).await.unwrap()),
        ["t1", "t2"]
    );
}

#[tokio::test]
async fn a_receive_reads_the_store_too_for_what_another_process_sent() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let _subscribed = a.subscribe(&tasks(), 60_000, 8);
    // Drain what the store held at start, so that only news makes the store worth reading.
    assert!(a.receive(&tasks(), 10, 60_000).await.unwrap().is_empty());
    a.send(vec![task("mine")]).await.unwrap();
    b.send(vec![task("theirs")]).await.unwrap();
    // The other process's commit is heard of through the watched folder.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(a.receive(&tasks(), 10, 60_000).await.unwrap());
        if got.len() == 2 {
            break;
        }
        a.wait(&tasks(), 100).await;
    }
    let mut got = ids(&got);
    got.sort_unstable();
    assert_eq!(got, ["mine", "theirs"]);
}

#[tokio::test]
async fn ending_a_subscription_hands_its_messages_back_to_the_store() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let subscribed = a.subscribe(&tasks(), 60_000, 8);
    a.send(vec![task("t1")]).await.unwrap();
    drop(subscribed);
    settled(&a).await;
    assert_eq!(ids(&b.receive(&tasks(), 10, 60_000).await.unwrap()), ["t1"]);
}

/// A task message taken by a worker of `a`, and the settlement of its successful attempt that
/// sends `result` to the workflow.
async fn settlement(a: &SqliteBackend, result: Message) -> Settlement {
    a.send(vec![task("i1/task/0")]).await.unwrap();
    let taken = a.receive(&tasks(), 1, 60_000).await.unwrap();
    assert_eq!(ids(&taken), ["i1/task/0"]);
    Settlement {
        receipt: taken[0].receipt.clone(),
        dead: None,
        messages: vec![result],
        attempt: Some(TaskAttempt {
            instance_id: "i1".to_owned(),
            seq: 0,
            attempt: 1,
            redrive: 0,
            service: "billing".to_owned(),
            task: "charge".to_owned(),
            started_at: now_ms(),
            ended_at: now_ms(),
            outcome: AttemptOutcome::Ok,
            error: None,
            retry_at: None,
        }),
    }
}

#[tokio::test]
async fn a_result_waits_in_memory_for_the_commit_that_takes_it_which_settles_its_task() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let _workflows = a.subscribe(&Topic::Workflows, 30_000, 64);
    let settlement = settlement(&a, result_for("i1")).await;
    a.settle(vec![settlement]).await.unwrap();
    // Neither the result nor the attempt is stored yet; the task message is, leased.
    assert_eq!(
        count(
            &a,
            "SELECT COUNT(*) FROM messages WHERE topic = 'workflows'"
        ),
        0
    );
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE id = 'i1/task/0'"),
        1
    );
    assert_eq!(count(&a, "SELECT COALESCE(SUM(ok), 0) FROM task_stats"), 0);
    assert!(b.receive(&tasks(), 10, 60_000).await.unwrap().is_empty());

    let got = a.receive(&Topic::Workflows, 10, 30_000).await.unwrap();
    assert_eq!(ids(&got), ["i1/result/0"]);
    let commit = Commit {
        instance: InstanceInfo::new("i1", "w", json!(null), now_ms()),
        create: true,
        expected_events: 0,
        events: Vec::new(),
        messages: Vec::new(),
        acks: vec![got[0].receipt.clone()],
        truncate_to: None,
        queries: None,
    };
    a.commit(vec![commit]).await.unwrap();
    // The commit settled the task: its message deleted, its attempt counted, no result stored.
    assert_eq!(count(&a, "SELECT COUNT(*) FROM messages"), 0);
    assert_eq!(count(&a, "SELECT SUM(ok) FROM task_stats"), 1);
}

#[tokio::test]
async fn a_failed_commit_leaves_the_deferred_result_for_the_next() {
    let (_dir, a, _b) = two(SqliteOptions::default());
    let _workflows = a.subscribe(&Topic::Workflows, 30_000, 64);
    a.settle(vec![settlement(&a, result_for("i1")).await])
        .await
        .unwrap();
    let got = a.receive(&Topic::Workflows, 10, 30_000).await.unwrap();
    let commit = |expected_events| Commit {
        instance: InstanceInfo::new("i1", "w", json!(null), now_ms()),
        create: false,
        expected_events,
        events: Vec::new(),
        messages: Vec::new(),
        acks: vec![got[0].receipt.clone()],
        truncate_to: None,
        queries: None,
    };
    // The instance does not exist: a conflict, nothing written.
    assert!(matches!(
        a.commit(vec![commit(3)]).await,
        Err(BackendError::Conflict(_))
    ));
    assert_eq!(count(&a, "SELECT COUNT(*) FROM messages"), 1);
    a.commit(vec![Commit {
        create: true,
        ..commit(0)
    }])
    .await
    .unwrap();
    assert_eq!(count(&a, "SELECT COUNT(*) FROM messages"), 0);
    assert_eq!(count(&a, "SELECT SUM(ok) FROM task_stats"), 1);
}

#[tokio::test]
async fn a_result_no_commit_takes_in_time_is_stored_as_any_other() {
    let options = SqliteOptions {
        deferred_patience: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let (_dir, a, b) = two(options);
    let _workflows = a.subscribe(&Topic::Workflows, 30_000, 64);
    a.settle(vec![settlement(&a, result_for("i1")).await])
        .await
        .unwrap();
    // Taken, and never committed (the receiver gave up on it).
    assert_eq!(
        a.receive(&Topic::Workflows, 10, 30_000)
            .await
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        a.receive(&Topic::Workflows, 10, 30_000)
            .await
            .unwrap()
            .len()
            <= 1
    );
    // The settlement was stored: the task message is gone, the result waits in the store.
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE id = 'i1/task/0'"),
        0
    );
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE id = 'i1/result/0'"),
        1
    );
    assert_eq!(count(&a, "SELECT SUM(ok) FROM task_stats"), 1);
    drop(b);
}

#[tokio::test]
async fn ending_a_workflow_subscription_stores_the_results_it_held() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let workflows = a.subscribe(&Topic::Workflows, 30_000, 64);
    a.settle(vec![settlement(&a, result_for("i1")).await])
        .await
        .unwrap();
    drop(workflows);
    settled(&a).await;
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE id = 'i1/task/0'"),
        0
    );
    assert_eq!(
        ids(&b.receive(&Topic::Workflows, 10, 30_000).await.unwrap()),
        ["i1/result/0"]
    );
}

#[tokio::test]
async fn without_a_workflow_subscription_a_result_is_stored_at_once() {
    let (_dir, a, b) = two(SqliteOptions::default());
    a.settle(vec![settlement(&a, result_for("i1")).await])
        .await
        .unwrap();
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM messages WHERE id = 'i1/task/0'"),
        0
    );
    assert_eq!(
        ids(&b.receive(&Topic::Workflows, 10, 30_000).await.unwrap()),
        ["i1/result/0"]
    );
}

/// A start of instance `id`, with its start message, as `Client::start` commits it.
fn start_of(id: &str) -> Commit {
    Commit {
        instance: InstanceInfo::new(id, "w", json!(null), now_ms()),
        create: true,
        expected_events: 0,
        events: Vec::new(),
        messages: vec![Message {
            id: format!("{id}/start"),
            topic: Topic::Workflows,
            key: id.to_owned(),
            deliver_at: now_ms(),
            body: MessageBody::Wake,
        }],
        acks: Vec::new(),
        truncate_to: None,
        queries: None,
    }
}

#[tokio::test]
async fn a_start_taken_in_this_process_returns_with_the_workers_first_commit() {
    let options = SqliteOptions {
        sync_within: Duration::from_secs(60),
        ..SqliteOptions::default()
    };
    let (_dir, a, _b) = two(options);
    let _subscribed = a.subscribe(&Topic::Workflows, 60_000, 8);
    let starting = tokio::spawn({
        let a = a.clone();
        async move { a.commit(vec![start_of("i1")]).await }
    });
    // The worker of this process gets the start at once, and the instance is in the store,
    // but the start waits for a commit that reaches the disk.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let got = a.receive(&Topic::Workflows, 10, 30_000).await.unwrap();
            if !got.is_empty() {
                return got;
            }
            a.wait(&Topic::Workflows, 100).await;
        }
    })
    .await
    .expect("the start reaches this process's worker");
    assert_eq!(ids(&got), ["i1/start"]);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM instances"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !starting.is_finished(),
        "the start returned before its sync"
    );
    // The worker's first commit waits for the disk: the start returns with it.
    a.commit(vec![Commit {
        create: false,
        acks: vec![got[0].receipt.clone()],
        messages: Vec::new(),
        ..start_of("i1")
    }])
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), starting)
        .await
        .expect("the start returns once the worker's commit is on the disk")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_start_no_commit_follows_is_synced_by_the_database_thread() {
    let options = SqliteOptions {
        sync_within: Duration::from_millis(20),
        ..SqliteOptions::default()
    };
    let (_dir, a, _b) = two(options);
    let _subscribed = a.subscribe(&Topic::Workflows, 60_000, 8);
    // No worker commits: the thread syncs the log itself.
    tokio::time::timeout(Duration::from_secs(5), a.commit(vec![start_of("i1")]))
        .await
        .expect("the start returns without a later commit")
        .unwrap();
    assert_eq!(count(&a, "SELECT COUNT(*) FROM instances"), 1);
}

#[tokio::test]
async fn a_start_no_worker_here_takes_waits_for_the_disk_itself() {
    let options = SqliteOptions {
        sync_within: Duration::from_secs(60),
        ..SqliteOptions::default()
    };
    let (_dir, a, b) = two(options);
    // Another process's worker takes it: nothing here would sync it for the start.
    let _subscribed = b.subscribe(&Topic::Workflows, 60_000, 8);
    tokio::time::timeout(Duration::from_secs(5), a.commit(vec![start_of("i1")]))
        .await
        .expect("a start no worker of this process takes commits as any other")
        .unwrap();
}

#[tokio::test]
async fn a_start_on_a_database_opened_through_a_link_is_synced_where_its_log_is() {
    let (_dir, _file, link) = super::tests::file_and_link();
    let options = SqliteOptions {
        sync_within: Duration::from_millis(20),
        ..SqliteOptions::default()
    };
    let a = SqliteBackend::open_with(&link, options).unwrap();
    let _subscribed = a.subscribe(&Topic::Workflows, 60_000, 8);
    // No worker commits: the thread syncs the log itself, wherever SQLite keeps it.
    tokio::time::timeout(Duration::from_secs(5), a.commit(vec![start_of("i1")]))
        .await
        .expect("the start returns without a later commit")
        .unwrap();
}
