//! The connection slots of one listener.
//!
//! A listener holds at most `max_connections` connections. When they are all taken, the next
//! one is not left waiting behind them: the slot of the oldest connection that is only waiting
//! (it has sent nothing yet, or sits idle between requests, or trickles a request head or body)
//! is given to the new one, and that connection is closed. A connection whose bytes have
//! arrived but not been read yet is not waiting, whatever this process has seen of it: on a
//! busy machine its task may simply not have run yet (see `deadline.rs`). Oldest by when it was accepted: a client that
//! has just connected is about to send its request and must not be pushed out by the next
//! connection of a flood, whatever the flood's connections do (send nothing, or trickle). A
//! connection whose request is being answered keeps its slot, so accepting pauses only while
//! every slot is answering, which takes microseconds: the handlers answer from memory.
//!
//! Why: a local process that opens a thousand connections and reopens each as soon as it is
//! closed used to hold every slot and leave the app's SDK (and the platform's health probe)
//! waiting behind it. Now such a flood costs the attacker its own connections instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::deadline::Activity;

/// How often a full listener looks again for a connection that has gone idle (a request
/// answered does not announce it).
const RECHECK: Duration = Duration::from_millis(10);
/// A connection keeps its slot for at least this long after it was accepted: time for a client
/// that has just connected to send its request, however fast a flood reconnects, on a machine
/// busy enough that the client is not scheduled at once (at 100 ms, a burst of 600 requests
/// beside two CPU hogs lost some; a request that has arrived is protected anyway, see
/// `Activity::pending`). It also bounds the churn of a flood to `cap / MIN_AGE` connections a
/// second, and so how long a client waits behind a flood in the listen backlog: at 300 ms, 1.5 s
/// behind 1,400 reconnecting sockets at the sidecar's cap of 256; at 200 ms, 1 s
/// (bench/hostile.md).
pub(crate) const MIN_AGE: Duration = Duration::from_millis(200);

/// The slots of one listener.
#[derive(Debug)]
pub(crate) struct Slots {
    cap: usize,
    state: Mutex<State>,
    freed: Notify,
    /// Connections closed to make room for a newer one.
    evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// By the order they were accepted in.
    open: BTreeMap<u64, Held>,
}

#[derive(Debug)]
struct Held {
    accepted: Instant,
    activity: Activity,
    /// How to close it; none until its task exists.
    abort: Option<AbortHandle>,
}

/// One connection's slot: freed when dropped (hold it in the connection's task).
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    slots: Arc<Slots>,
}

impl Slots {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            evicted: AtomicU64::new(0),
        })
    }

    /// Returns once one more connection may be taken: a slot is free, or one was taken from a
    /// waiting connection (which is being closed).
    pub(crate) async fn room(&self) {
        loop {
            if self.try_room() {
                return;
            }
            // `notify_one` keeps a permit when nobody waits, so a slot freed between the check
            // and this wait is not missed.
            tokio::select! {
                () = self.freed.notified() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    fn try_room(&self) -> bool {
        let state = self.state.lock();
        if state.open.len() < self.cap {
            return true;
        }
        self.evict(state)
    }

    /// Closes the waiting connection that is first to go, if any, as at the cap: for when the
    /// process is out of file descriptors before the listener is out of slots.
    pub(crate) fn shed(&self) -> bool {
        self.evict(self.state.lock())
    }

    fn evict(&self, mut state: parking_lot::MutexGuard<'_, State>) -> bool {
        let now = Instant::now();
        let victim = state
            .open
            .iter()
            .take_while(|(_, held)| now.duration_since(held.accepted) >= MIN_AGE)
            .find(|(_, held)| {
                held.abort.is_some() && held.activity.waiting() && !held.activity.pending()
            })
            .map(|(id, _)| *id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(Held {
            abort: Some(abort), ..
        }) = state.open.remove(&id)
        {
            abort.abort();
        }
        drop(state);
        let evicted = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
        if evicted.is_power_of_two() {
            tracing::debug!(
                evicted,
                cap = self.cap,
                "all connection slots taken: closed a waiting connection to accept a new one"
            );
        }
        true
    }

    /// Takes a slot for a connection just accepted (after [`Slots::room`]).
    pub(crate) fn take(self: &Arc<Self>, activity: Activity) -> Slot {
        let mut state = self.state.lock();
        let id = state.next;
        state.next += 1;
        state.open.insert(
            id,
            Held {
                accepted: Instant::now(),
                activity,
                abort: None,
            },
        );
        Slot {
            id,
            slots: self.clone(),
        }
    }

    /// Connections closed so far to make room for newer ones.
    #[cfg(test)]
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.state.lock().open.len()
    }
}

/// Names a [`Slot`] without holding it.
#[derive(Debug, Clone)]
pub(crate) struct SlotRef {
    id: u64,
    slots: Arc<Slots>,
}

impl Slot {
    pub(crate) fn reference(&self) -> SlotRef {
        SlotRef {
            id: self.id,
            slots: self.slots.clone(),
        }
    }

    /// See [`SlotRef::closes_with`].
    #[cfg(test)]
    pub(crate) fn closes_with(&self, abort: AbortHandle) {
        self.reference().closes_with(abort);
    }
}

impl SlotRef {
    /// How to close this connection if its slot is needed (the task serving it, or the one
    /// doing its TLS handshake; a later call replaces an earlier one). Nothing if the slot was
    /// freed meanwhile.
    pub(crate) fn closes_with(&self, abort: AbortHandle) {
        if let Some(held) = self.slots.state.lock().open.get_mut(&self.id) {
            held.abort = Some(abort);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let removed = self.slots.state.lock().open.remove(&self.id).is_some();
        if removed {
            self.slots.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::deadline as head_deadline;
    use super::*;

    fn parked() -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_listener_closes_the_oldest_silent_connection() {
        let slots = Slots::new(3);
        let mut held = Vec::new();
        for _ in 0..3 {
            slots.room().await;
            let (_, _, activity) = head_deadline::pair(Duration::from_secs(60), None);
            let slot = slots.take(activity);
            let task = parked();
            slot.closes_with(task.abort_handle());
            held.push((slot, task));
        }
        assert_eq!(slots.open(), 3);
        tokio::time::sleep(MIN_AGE).await;
        slots.room().await;
        assert_eq!(slots.evicted(), 1);
        assert_eq!(slots.open(), 2);
        tokio::task::yield_now().await;
        assert!(held[0].1.is_finished(), "the oldest was closed");
        assert!(!held[1].1.is_finished() && !held[2].1.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_waiting_connection_goes_first_whatever_it_sent() {
        let slots = Slots::new(2);
        // The older one has spoken and sits idle between requests (hyper waits for a head)...
        let (timer, _watchdog, spoke) = head_deadline::pair(Duration::from_secs(60), None);
        spoke.note_spoke();
        let _idle = hyper::rt::Timer::sleep(&timer, Duration::from_secs(5));
        let old = slots.take(spoke);
        let old_task = parked();
        old.closes_with(old_task.abort_handle());
        // ...the newer one has just connected and not sent its request yet.
        let (_, _, silent) = head_deadline::pair(Duration::from_secs(60), None);
        let new = slots.take(silent);
        let new_task = parked();
        new.closes_with(new_task.abort_handle());
        tokio::time::sleep(MIN_AGE).await;
        slots.room().await;
        tokio::task::yield_now().await;
        assert!(old_task.is_finished() && !new_task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_just_accepted_keeps_its_slot_for_a_moment() {
        let slots = Slots::new(1);
        let (_, _, silent) = head_deadline::pair(Duration::from_secs(60), None);
        let slot = slots.take(silent);
        let task = parked();
        slot.closes_with(task.abort_handle());
        let room = tokio::spawn({
            let slots = slots.clone();
            async move { slots.room().await }
        });
        tokio::time::sleep(MIN_AGE - Duration::from_millis(20)).await;
        assert!(!room.is_finished() && !task.is_finished());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(room.is_finished());
        tokio::task::yield_now().await;
        assert!(task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_being_answered_keeps_its_slot() {
        let slots = Slots::new(1);
        let (_timer, _watchdog, busy) = head_deadline::pair(Duration::from_secs(60), None);
        // It has spoken and no head is being read: a request is being answered.
        busy.note_spoke();
        let slot = slots.take(busy);
        slot.closes_with(parked().abort_handle());
        let room = tokio::spawn({
            let slots = slots.clone();
            async move { slots.room().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !room.is_finished(),
            "waits while the only connection is answered"
        );
        drop(slot);
        room.await.unwrap();
        assert_eq!(slots.evicted(), 0);
    }
}
