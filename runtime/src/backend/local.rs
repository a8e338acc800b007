//! Messages a process sends to itself, handed to its own receivers as they are stored; both
//! backends use it.
//!
//! A deployment often runs the workflow worker and a service worker in one process. Through
//! the store alone, each step of a workflow is a round trip per message: the workflow's commit
//! stores a task message, the service worker's receive takes it under a lease (a write), its
//! settlement deletes it and stores the result message (a commit), the workflow worker's
//! receive takes that (a write), and its commit deletes it; on the distributed backend each
//! message also goes through the broker. Here, when a worker of this process has subscribed to
//! a topic ([`MessageQueue::subscribe`]), a message this process stores for it is stored
//! already leased, in the same transaction, and handed to the next receive from memory (the
//! embedded backend stores a leased row; the distributed backend an outbox row that the relay
//! leaves alone until the lease ends, and does not publish it); and a task's successful result
//! is not stored at all: its settlement waits in memory and the workflow commit that takes the
//! result applies it (deletes the task message, counts the attempt) in its own transaction.
//! Each step is then one commit.
//!
//! What stays true:
//! - Every message is in the store from the commit that sends it (a pre-leased one as a leased
//!   row), so a process that dies loses nothing: leases run out and other processes take the
//!   messages, as after a crash between a receive and its acknowledgement. A task whose
//!   deferred settlement dies with the process is run again (its idempotency key keeps that
//!   safe), as a task whose result was not yet stored always was.
//! - Other processes see what they always saw: a leased message is being handled.
//! - Only what a receiver can take soon is held (`capacity`); past it messages are stored for
//!   any receiver, and the receives read the store again (`dirty`) whenever it may hold due
//!   messages that are not in memory: at start, after another process's commit, after a
//!   message stored unleased or delayed comes due, after a wait ran out.
//! - A subscription that ends hands back what it held: leases released, deferred settlements
//!   stored.
//!
//! [`MessageQueue::subscribe`]: crate::backend::MessageQueue::subscribe

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::{Delivery, Message, Receipt, Settlement, Topic};

/// The prefix of the receipt of a deferred result, which has no row.
const DEFERRED: &str = "deferred:";

/// How long a deferred result may wait, taken by a receiver and not committed, before its
/// settlement is stored as any other (the receiver gave up on it; its result message then
/// comes from the store).
pub(in crate::backend) const DEFERRED_PATIENCE: Duration = Duration::from_secs(10);

/// What a process holds for its own receivers, by topic.
pub(in crate::backend) struct Local {
    topics: Mutex<HashMap<String, TopicState>>,
    /// Settlements waiting for the commit that takes their result, by receipt number.
    deferred: Mutex<HashMap<u64, Deferred>>,
    next: AtomicU64,
    /// [`DEFERRED_PATIENCE`], but in tests.
    patience: Duration,
}

impl Default for Local {
    fn default() -> Self {
        Self::new(DEFERRED_PATIENCE)
    }
}

/// One topic's subscribers and the deliveries held for them.
struct TopicState {
    subscribers: usize,
    lease_ms: i64,
    capacity: usize,
    /// Deliveries not yet received, oldest first.
    queue: VecDeque<Delivery>,
    /// Counts the times the store may have got due messages of the topic that are not in
    /// `queue`; the store holds none when it equals `clean`.
    dirty: u64,
    /// The count as it was when a read of the store last found all that was due.
    clean: u64,
}

impl Default for TopicState {
    fn default() -> Self {
        Self {
            subscribers: 0,
            lease_ms: 0,
            capacity: 0,
            queue: VecDeque::new(),
            // What was stored before the process began.
            dirty: 1,
            clean: 0,
        }
    }
}

/// A task's settlement waiting for the commit that takes its result.
pub(in crate::backend) struct Deferred {
    /// The settlement, its result message included.
    pub(in crate::backend) settlement: Settlement,
    /// When a receiver took the result; none while it waits in the queue.
    taken: Option<Instant>,
}

/// What ending a subscription hands back.
pub(in crate::backend) struct Released {
    /// Pre-leased messages whose leases to release.
    pub(in crate::backend) leased: Vec<Delivery>,
    /// Settlements to store as any other.
    pub(in crate::backend) settlements: Vec<Settlement>,
}

impl Local {
    /// Nothing held yet; deferred results wait `patience` for their commit.
    pub(in crate::backend) fn new(patience: Duration) -> Self {
        Self {
            topics: Mutex::default(),
            deferred: Mutex::default(),
            next: AtomicU64::new(0),
            patience,
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, TopicState>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deferred(&self) -> MutexGuard<'_, HashMap<u64, Deferred>> {
        self.deferred.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a subscriber to `topic`.
    pub(in crate::backend) fn subscribe(&self, topic: &str, lease_ms: i64, capacity: usize) {
        let mut topics = self.topics();
        let state = topics.entry(topic.to_owned()).or_default();
        state.subscribers += 1;
        state.lease_ms = state.lease_ms.max(lease_ms);
        state.capacity = state.capacity.max(capacity);
    }

    /// Removes a subscriber of `topic`; the last one hands back what is held for it.
    pub(in crate::backend) fn unsubscribe(&self, topic: &str) -> Released {
        let mut released = Released {
            leased: Vec::new(),
            settlements: Vec::new(),
        };
        let queue = {
            let mut topics = self.topics();
            let Some(state) = topics.get_mut(topic) else {
                return released;
            };
            state.subscribers = state.subscribers.saturating_sub(1);
            if state.subscribers > 0 {
                return released;
            }
            state.dirty += 1;
            std::mem::take(&mut state.queue)
        };
        let mut deferred = self.deferred();
        for delivery in queue {
            match deferred_number(&delivery.receipt) {
                Some(n) => released
                    .settlements
                    .extend(deferred.remove(&n).map(|d| d.settlement)),
                None => released.leased.push(delivery),
            }
        }
        released
    }

    /// The lease under which a message for `topic` is stored for this process's receivers,
    /// reserving room for it: none when no receiver of this process takes the topic, or they
    /// hold as much as they can take.
    pub(in crate::backend) fn lease_for(&self, topic: &str, reserved: usize) -> Option<i64> {
        let topics = self.topics();
        let state = topics.get(topic)?;
        (state.subscribers > 0 && state.queue.len() + reserved < state.capacity)
            .then_some(state.lease_ms)
    }

    /// Hands stored, leased messages to the receivers of their topics; gives back those of a
    /// topic whose last receiver left meanwhile (between [`Local::lease_for`] and now).
    pub(in crate::backend) fn hold(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let mut unplaced = Vec::new();
        if deliveries.is_empty() {
            return unplaced;
        }
        let mut topics = self.topics();
        for delivery in deliveries {
            match topics.get_mut(&delivery.message.topic.name()) {
                Some(state) if state.subscribers > 0 => state.queue.push_back(delivery),
                _ => unplaced.push(delivery),
            }
        }
        unplaced
    }

    /// Says that the store may hold due messages of `topic` that are not held here.
    pub(in crate::backend) fn mark_dirty(&self, topic: &str) {
        self.topics().entry(topic.to_owned()).or_default().dirty += 1;
    }

    /// Says that the store may hold due messages of any topic.
    pub(in crate::backend) fn mark_all_dirty(&self) {
        for state in self.topics().values_mut() {
            state.dirty += 1;
        }
    }

    /// Whether a receive of `topic` should read the store too; if so, the count to give
    /// [`Local::mark_clean`] when the read finds all that was due.
    pub(in crate::backend) fn dirty(&self, topic: &str) -> Option<u64> {
        match self.topics().get(topic) {
            None => Some(1),
            Some(s) => (s.dirty != s.clean).then_some(s.dirty),
        }
    }

    /// Whether anything is held for `topic`'s receivers.
    pub(in crate::backend) fn holds(&self, topic: &str) -> bool {
        self.topics()
            .get(topic)
            .is_some_and(|s| !s.queue.is_empty())
    }

    /// Says that a read of the store that began at the count `seen` found all that was due
    /// for `topic`; a mark since keeps it dirty.
    pub(in crate::backend) fn mark_clean(&self, topic: &str, seen: u64) {
        let mut topics = self.topics();
        let state = topics.entry(topic.to_owned()).or_default();
        state.clean = state.clean.max(seen);
    }

    /// Defers `settlement`, whose one message is the result `message` for a workflow, if a
    /// receiver of this process takes it and has room: it is handed to the receiver under a
    /// receipt of its own, and applied by the commit that acknowledges that receipt. Gives the
    /// settlement back otherwise.
    pub(in crate::backend) fn defer(&self, settlement: Settlement) -> Option<Settlement> {
        let [message] = settlement.messages.as_slice() else {
            return Some(settlement);
        };
        let topic = message.topic.name();
        if settlement.dead.is_some()
            || message.topic != Topic::Workflows
            || message.deliver_at > crate::time::now_ms()
            || self.lease_for(&topic, 0).is_none()
        {
            return Some(settlement);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let delivery = Delivery {
            receipt: Receipt(format!("{DEFERRED}{n}")),
            message: message.clone(),
        };
        self.deferred().insert(
            n,
            Deferred {
                settlement,
                taken: None,
            },
        );
        if self.hold(vec![delivery]).is_empty() {
            return None;
        }
        // The receiver left meanwhile: the settlement is stored as any other.
        self.deferred().remove(&n).map(|d| d.settlement)
    }

    /// Takes up to `max` held deliveries of `topic`: on [`Topic::Workflows`], those of up to
    /// `max` instances, every held one of each. A pre-leased one whose lease ran out while it
    /// waited is left to the store, which delivers it again.
    pub(in crate::backend) fn take(&self, topic: &Topic, max: usize, now: i64) -> Vec<Delivery> {
        let mut taken: Vec<Delivery> = {
            let mut topics = self.topics();
            let Some(state) = topics.get_mut(&topic.name()) else {
                return Vec::new();
            };
            match topic {
                Topic::Tasks(_) => {
                    let n = max.min(state.queue.len());
                    state.queue.drain(..n).collect()
                }
                Topic::Workflows => {
                    let mut keys = HashSet::new();
                    for d in &state.queue {
                        if keys.len() == max {
                            break;
                        }
                        keys.insert(d.message.key.clone());
                    }
                    let mut taken = Vec::new();
                    for d in std::mem::take(&mut state.queue) {
                        if keys.contains(&d.message.key) {
                            taken.push(d);
                        } else {
                            state.queue.push_back(d);
                        }
                    }
                    taken
                }
            }
        };
        taken.retain(|d| lease_end(&d.receipt).is_none_or(|end| end > now));
        let now = Instant::now();
        let mut deferred = self.deferred();
        for d in &taken {
            if let Some(entry) = deferred_number(&d.receipt).and_then(|n| deferred.get_mut(&n)) {
                entry.taken = Some(now);
            }
        }
        taken
    }

    /// The settlements of the deferred results among `receipts` (others are passed over),
    /// taken out: their commit is under way. [`Local::restore`] puts them back if it fails.
    pub(in crate::backend) fn settlements_of<'a>(
        &self,
        receipts: impl IntoIterator<Item = &'a Receipt>,
    ) -> Vec<(u64, Settlement)> {
        let mut deferred = self.deferred();
        receipts
            .into_iter()
            .filter_map(deferred_number)
            .filter_map(|n| deferred.remove(&n).map(|d| (n, d.settlement)))
            .collect()
    }

    /// Defers each of `settlements` that a receiver of this process takes (see
    /// [`Local::defer`]); returns the others, with those abandoned, to store now.
    pub(in crate::backend) fn defer_all(&self, settlements: Vec<Settlement>) -> Vec<Settlement> {
        let mut rest: Vec<Settlement> = settlements
            .into_iter()
            .filter_map(|s| self.defer(s))
            .collect();
        rest.extend(self.abandoned());
        rest
    }

    /// What to apply of the deferred settlements taken by [`Local::settlements_of`]: each
    /// without its result message, which the workflow commit takes instead of storing it.
    pub(in crate::backend) fn to_apply(deferred: &[(u64, Settlement)]) -> Vec<Settlement> {
        deferred
            .iter()
            .map(|(_, s)| Settlement {
                messages: Vec::new(),
                ..s.clone()
            })
            .collect()
    }

    /// Puts back settlements whose commit failed.
    pub(in crate::backend) fn restore(&self, settlements: Vec<(u64, Settlement)>) {
        let now = Instant::now();
        let mut deferred = self.deferred();
        for (n, settlement) in settlements {
            deferred.insert(
                n,
                Deferred {
                    settlement,
                    taken: Some(now),
                },
            );
        }
    }

    /// The deferred settlements a receiver took more than [`DEFERRED_PATIENCE`] ago and never
    /// committed, taken out to be stored as any other.
    pub(in crate::backend) fn abandoned(&self) -> Vec<Settlement> {
        let mut deferred = self.deferred();
        let stale: Vec<u64> = deferred
            .iter()
            .filter(|(_, d)| d.taken.is_some_and(|t| t.elapsed() > self.patience))
            .map(|(n, _)| *n)
            .collect();
        stale
            .into_iter()
            .filter_map(|n| deferred.remove(&n).map(|d| d.settlement))
            .collect()
    }
}

/// The number of a deferred result's receipt.
fn deferred_number(receipt: &Receipt) -> Option<u64> {
    receipt.0.strip_prefix(DEFERRED)?.parse().ok()
}

/// When the lease of a pre-leased delivery ends (its receipt ends in `:LEASE_END`).
fn lease_end(receipt: &Receipt) -> Option<i64> {
    if is_deferred(receipt) {
        return None;
    }
    receipt.0.rsplit_once(':')?.1.parse().ok()
}

/// Whether `receipt` is a deferred result's.
pub(in crate::backend) fn is_deferred(receipt: &Receipt) -> bool {
    receipt.0.starts_with(DEFERRED)
}

/// A worker's subscription to a topic of an embedded backend; dropping it hands back what is
/// held for it.
pub(in crate::backend) struct Subscribed {
    pub(in crate::backend) topic: String,
    pub(in crate::backend) release: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        (self.release)(&self.topic);
    }
}

/// A message as a delivery under the receipt `seq:lease`, as the receives give them.
pub(in crate::backend) fn delivery(seq: i64, lease: i64, message: &Message) -> Delivery {
    Delivery {
        receipt: Receipt(format!("{seq}:{lease}")),
        message: message.clone(),
    }
}
