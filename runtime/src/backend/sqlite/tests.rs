//! Wake-ups between two backends on one file, as between two processes.

use super::*;
use crate::backend::{Commit, Message, MessageBody, MessageQueue, StateStore, Topic};
use crate::time::now_ms;

fn task(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        topic: Topic::Tasks("billing".to_owned()),
        key: "instance".to_owned(),
        deliver_at: 0,
        body: MessageBody::Wake,
    }
}

/// An empty database file in a folder of its own, and a link to it from outside that folder.
pub(super) fn file_and_link() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let file = dir.path().join("data").join("real.db");
    let link = dir.path().join("link.db");
    std::fs::File::create(&file).unwrap();
    std::os::unix::fs::symlink(&file, &link).unwrap();
    (dir, file, link)
}

/// Two backends on one file know nothing of each other but the file and its wake-up
/// folder, as two processes would.
fn two(options: SqliteOptions) -> (tempfile::TempDir, SqliteBackend, SqliteBackend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteBackend::open_with(&path, options.clone()).unwrap();
    let b = SqliteBackend::open_with(&path, options).unwrap();
    (dir, a, b)
}

/// Whether a message `a` sends ends a minute's wait of `b` on its topic within 30 s.
async fn a_send_ends_a_wait(a: &SqliteBackend, b: SqliteBackend) -> bool {
    let topic = Topic::Tasks("billing".to_owned());
    let waiting = tokio::spawn(async move { b.wait(&topic, 60_000).await });
    // Let the wait find nothing and park.
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(vec![task("t1")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .is_ok_and(|joined| joined.is_ok())
}

#[tokio::test]
async fn a_message_sent_by_another_backend_on_the_file_ends_a_long_wait() {
    let (_dir, a, b) = two(SqliteOptions::default());
    assert!(
        a_send_ends_a_wait(&a, b).await,
        "the wait was not woken by the other backend's message"
    );
}

#[tokio::test]
async fn backends_that_open_one_file_by_different_paths_wake_each_other() {
    let (_dir, file, link) = file_and_link();
    let a = SqliteBackend::open(&link).unwrap();
    let b = SqliteBackend::open(&file).unwrap();
    assert!(
        a_send_ends_a_wait(&a, b).await,
        "the wait was not woken by the backend that opened the file through a link"
    );
}

#[tokio::test]
async fn a_message_for_another_topic_does_not_end_a_wait() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let waiting =
        tokio::spawn(async move { b.wait(&Topic::Tasks("other".to_owned()), 60_000).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(vec![task("t1")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    waiting.abort();
}

#[tokio::test]
async fn a_commit_by_another_backend_on_the_file_ends_a_wait_for_change() {
    let (_dir, a, b) = two(SqliteOptions::default());
    let info = InstanceInfo::new("i1", "w", serde_json::json!(1), now_ms());
    let commit = |status: Status, create: bool, expected_events: u64| Commit {
        instance: InstanceInfo {
            status,
            ..info.clone()
        },
        create,
        expected_events,
        events: Vec::new(),
        messages: Vec::new(),
        acks: Vec::new(),
        truncate_to: None,
        queries: None,
    };
    a.commit(vec![commit(Status::Running, true, 0)])
        .await
        .unwrap();
    let seen = b.instance("i1").await.unwrap().unwrap();
    let waiting = tokio::spawn({
        let seen = seen.clone();
        async move { b.wait_for_change(&seen, Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "nothing changed yet");
    a.commit(vec![commit(Status::Completed, false, 0)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the wait was not woken by the other backend's commit")
        .unwrap();
}

#[tokio::test]
async fn a_wait_for_change_returns_at_once_when_the_instance_already_changed() {
    let (_dir, a, _b) = two(SqliteOptions::default());
    let mut seen = InstanceInfo::new("i1", "w", serde_json::json!(1), now_ms());
    a.commit(vec![Commit {
        instance: seen.clone(),
        create: true,
        expected_events: 0,
        events: Vec::new(),
        messages: Vec::new(),
        acks: Vec::new(),
        truncate_to: None,
        queries: None,
    }])
    .await
    .unwrap();
    // What the caller saw is older than what is stored.
    seen.updated_at -= 1;
    tokio::time::timeout(
        Duration::from_secs(30),
        a.wait_for_change(&seen, Duration::from_secs(60)),
    )
    .await
    .expect("the change was already there");
}

#[tokio::test]
async fn without_process_wakeups_there_is_no_folder_and_a_wait_runs_to_its_bound() {
    let (dir, a, b) = two(SqliteOptions::default().with_process_wakeups(false));
    assert!(!dir.path().join("shared.db-wake").exists());
    let topic = Topic::Tasks("billing".to_owned());
    let waiting = tokio::spawn(async move { b.wait(&topic, 60_000).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(vec![task("t1")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    waiting.abort();
}

/// The size of the log file beside the database at `path`.
fn log_bytes(path: &std::path::Path) -> u64 {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    std::fs::metadata(log).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_log_stays_bounded_under_a_steady_stream_of_commits() {
    // Commits that never stop (as under load) leave a checkpoint on the read connection no
    // moment with the whole log copied, so the log would never start again from its
    // beginning; the write connection restarts it once it grows past its bound.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let options = SqliteOptions {
        restart_log_frames: 256,
        ..SqliteOptions::default()
    };
    let backend = Arc::new(SqliteBackend::open_with(&path, options).unwrap());
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..8 {
        let backend = backend.clone();
        senders.spawn(async move {
            for n in 0..400 {
                // A long key: a few pages of log per commit.
                let mut message = task(&format!("t{s}-{n}"));
                message.key = format!("instance-{s}-{n}-{}", "x".repeat(200));
                backend.send(vec![message]).await.unwrap();
            }
        });
    }
    let mut largest = 0;
    while !senders.is_empty() {
        tokio::select! {
            joined = senders.join_next() => { joined.unwrap().unwrap(); }
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        largest = largest.max(log_bytes(&path));
    }
    largest = largest.max(log_bytes(&path));
    // 3,200 commits of a few pages each: 83 MiB of log when it never started again. With a
    // restart past 256 frames (1 MiB), looked at every 100 commits (about 2.6 MB of log here),
    // it stayed within 6 MiB.
    assert!(
        largest < 16 << 20,
        "the log grew to {} MiB under steady commits",
        largest >> 20
    );
}
