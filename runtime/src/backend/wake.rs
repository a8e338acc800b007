//! Wake-ups of the embedded backend, within a process and across the processes that share one
//! database file.
//!
//! Within a process, waiters are woken by a [`Notify`] per topic (and one for instance state).
//! Across processes, a folder beside the database (`<file>-wake/`) holds one small file per
//! topic and one for instance state (`instances`). A process that commits messages for a topic
//! touches that topic's file (sets its modification time) after the commit; every process
//! watches the folder (inotify on Linux, through the `notify` crate) and turns a change of a
//! file into a wake-up of that topic's local waiters. Only the waiters of the topics that
//! changed wake. Nothing in the folder belongs to a process, so a killed one leaves nothing to
//! clean up.
//!
//! A notification can still be lost: a process killed between its commit and the touch, a
//! file system without change notifications, or a folder that cannot be created. Waiters keep a
//! bound on their wait (the workers' idle wait) for that case only.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::sync::Notify;

/// The file that stands for instance state (no topic is named so).
const INSTANCES: &str = "instances";

/// Characters kept as they are in a file name; every other one is percent-encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The local waiters: one [`Notify`] per topic name, and one for instance state.
#[derive(Default)]
pub(crate) struct Waiters {
    topics: Mutex<HashMap<String, Arc<Notify>>>,
    /// Fired after every commit of instance state.
    pub(crate) changed: Notify,
}

impl Waiters {
    /// The notifier of a topic, created on first use.
    pub(crate) fn topic(&self, name: &str) -> Arc<Notify> {
        let mut map = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Wakes the waiters of a topic, if it has any.
    fn wake_topic(&self, name: &str) {
        let map = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = map.get(name) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter: after a notification that may stand for lost ones.
    fn wake_all(&self) {
        let map = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        for notify in map.values() {
            notify.notify_waiters();
        }
        self.changed.notify_waiters();
    }
}

/// What a process needs to tell other processes of its commits and to hear of theirs.
pub(crate) struct Wake {
    dir: PathBuf,
    /// The topic files this process has touched, kept open.
    files: Mutex<HashMap<String, File>>,
    /// Watches `dir`; dropping it stops the watch.
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake").field("dir", &self.dir).finish()
    }
}

/// The folder of topic files of a database.
pub(crate) fn folder(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wake");
    PathBuf::from(name)
}

fn file_name(topic: &str) -> String {
    utf8_percent_encode(topic, ENCODED).to_string()
}

impl Wake {
    /// Creates the folder beside `database` if needed and starts watching it; the watch calls
    /// `heard` with the topic that changed (none: any may have) and then wakes `waiters`.
    pub(crate) fn start(
        database: &Path,
        waiters: Arc<Waiters>,
        heard: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let dir = folder(database);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    Ok(event) if !event.need_rescan() => {
                        for path in &event.paths {
                            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                                continue;
                            };
                            if name == INSTANCES {
                                waiters.changed.notify_waiters();
                            } else if let Ok(topic) = percent_decode_str(name).decode_utf8() {
                                heard(Some(&topic));
                                waiters.wake_topic(&topic);
                            }
                        }
                    }
                    // Events were dropped (the kernel's queue overflowed) or the watch failed: any
                    // topic may have news.
                    _ => {
                        heard(None);
                        waiters.wake_all();
                    }
                }
            })
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            files: Mutex::new(HashMap::new()),
            _watcher: watcher,
        })
    }

    /// Tells the other processes that `topics` have new messages and, if `state`, that
    /// instance state changed. Called after the commit; a failure only costs them the wait
    /// until their bound.
    pub(crate) fn announce(&self, topics: &[String], state: bool) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let names = topics
            .iter()
            .map(|t| file_name(t))
            .chain(state.then(|| INSTANCES.to_owned()));
        for name in names {
            if !files.contains_key(&name) {
                match File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.dir.join(&name))
                {
                    Ok(file) => {
                        files.insert(name.clone(), file);
                    }
                    Err(err) => {
                        tracing::warn!(dir = %self.dir.display(), %name, %err, "cannot open a wake-up file; other processes will see this change when their wait runs out");
                        continue;
                    }
                }
            }
            if let Some(file) = files.get(&name)
                && let Err(err) = file.set_modified(SystemTime::now())
            {
                tracing::warn!(dir = %self.dir.display(), %name, %err, "cannot touch a wake-up file; other processes will see this change when their wait runs out");
                // Opened again next time, in case the folder was replaced.
                files.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_file_names_are_plain_and_distinct() {
        assert_eq!(file_name("workflows"), "workflows");
        assert_eq!(file_name("tasks/billing"), "tasks%2Fbilling");
        assert_eq!(file_name("tasks/a.b c"), "tasks%2Fa%2Eb%20c");
        assert_ne!(file_name("tasks/instances"), INSTANCES);
        for topic in ["workflows", "tasks/billing", "tasks/a.b c", "tasks/é"] {
            let name = file_name(topic);
            assert_eq!(percent_decode_str(&name).decode_utf8().unwrap(), topic);
        }
    }
}
