//! A connection's deadlines (its first byte, each request head, a request body being read) and
//! what the listener's slots see of it ([`Activity`]).
//!
//! # Heads
//!
//! hyper's `header_read_timeout` asks its timer for a sleep each time it starts reading a request
//! head and drops it when the head has arrived. With hyper-util's `TokioTimer` that is an
//! allocation, a registration in tokio's timer wheel (under its lock) and a deregistration for
//! every request; on the benchmark it cost about 7 % of requests per second.
//!
//! Here each connection gets its own [`HeadTimer`]. Its sleeps only record their deadline in an
//! atomic shared with the connection's [`Watchdog`]; the watchdog holds the one tokio timer, which
//! fires when the recorded deadline is due (so at most once per timeout period while requests
//! flow), and ends the connection if a head read is still in progress past it. Idle keep-alive
//! connections are closed the same way: hyper starts reading the next head as soon as a response
//! is written.
//!
//! # Bytes that have arrived are never idle
//!
//! A connection counts as *waiting* (so that its slot may go to a newer one, and its deadlines
//! apply) while it has sent nothing yet, while a request head is being read, or while a handler
//! reads its request body ([`Activity::body`]). But "sent nothing" is what this process has
//! *read*: on a busy machine a client's request may sit in the socket's receive queue for a
//! while before the connection's task runs. [`Activity::pending`] looks at that queue (a
//! one-byte `MSG_PEEK`), so that neither the slots nor the watchdog take a connection whose
//! request has arrived for an idle one.

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The encoded "no head is being read".
const NONE: u64 = 0;

#[derive(Debug)]
struct Shared {
    /// The deadline of the head being read: nanoseconds after `epoch`, plus one (0 is [`NONE`]).
    deadline: AtomicU64,
    epoch: Instant,
    /// Whether the client has sent a byte yet.
    spoke: AtomicBool,
    /// Until when a client that has sent nothing keeps its connection.
    first_byte_by: Instant,
    /// The deadline of a request body being read, encoded as `deadline`.
    body_deadline: AtomicU64,
    /// The connection's socket, to look at its receive queue (none for in-memory streams).
    fd: Option<RawFd>,
}

impl Shared {
    fn encode(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Acquire) {
            NONE => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }
}

/// Now, on tokio's clock (so that paused test time applies).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A timer for one connection, the watchdog that enforces its deadlines, and what the slots of
/// the listener see of it. A connection that has sent nothing `first_byte_within` after it was
/// accepted is ended as late. `fd` is its socket, when it has one.
pub(crate) fn pair(
    first_byte_within: Duration,
    fd: Option<RawFd>,
) -> (HeadTimer, Watchdog, Activity) {
    let epoch = now();
    let shared = Arc::new(Shared {
        deadline: AtomicU64::new(NONE),
        epoch,
        spoke: AtomicBool::new(false),
        first_byte_by: epoch + first_byte_within,
        body_deadline: AtomicU64::new(NONE),
        fd,
    });
    (
        HeadTimer(shared.clone()),
        Watchdog(shared.clone()),
        Activity(shared),
    )
}

/// Whether a connection is busy with a request or only waiting for one.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Shared>);

impl Activity {
    /// Waiting: it has sent nothing yet, or a request head is being read (an idle keep-alive
    /// connection, a client trickling its headers), or a handler is reading its request body.
    /// Such a connection may give way to a new one at the cap (unless bytes it sent are
    /// [`pending`](Activity::pending)); one whose request is being answered may not.
    pub(crate) fn waiting(&self) -> bool {
        !self.spoke()
            || self.0.deadline().is_some()
            || self.0.body_deadline.load(Ordering::Acquire) != NONE
    }

    /// Whether bytes the client sent wait in the socket's receive queue, not read yet (by a
    /// task that has not run yet on a busy machine). Also true when the client has closed its
    /// side and that is what waits to be read: either way the connection is not silent.
    pub(crate) fn pending(&self) -> bool {
        use nix::sys::socket::{MsgFlags, recv};
        let Some(fd) = self.0.fd else { return false };
        let mut byte = [0u8; 1];
        // The descriptor stays open while the connection's slot is held (the slot is freed
        // after the stream is dropped, a few instructions later): at worst this peeks at a
        // connection accepted in between, which only makes the answer more cautious.
        matches!(
            recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
            Ok(n) if n > 0
        )
    }

    /// Marks a request body as being read until `deadline`: the connection counts as waiting
    /// meanwhile. The mark is cleared when the returned guard is dropped.
    pub(crate) fn body(&self, deadline: Instant) -> BodyMark {
        let code = self.0.encode(deadline);
        self.0.body_deadline.store(code, Ordering::Release);
        BodyMark(self.0.clone())
    }

    /// Whether the client has sent a byte yet.
    pub(crate) fn spoke(&self) -> bool {
        self.0.spoke.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn note_spoke(&self) {
        self.0.spoke.store(true, Ordering::Release);
    }
}

/// A request body being read (see [`Activity::body`]).
#[derive(Debug)]
pub(crate) struct BodyMark(Arc<Shared>);

impl Drop for BodyMark {
    fn drop(&mut self) {
        self.0.body_deadline.store(NONE, Ordering::Release);
    }
}

/// Wraps a connection's stream to note its first byte.
pub(crate) struct Noting<IO> {
    io: IO,
    shared: Arc<Shared>,
}

impl<IO> Noting<IO> {
    pub(crate) fn new(io: IO, activity: &Activity) -> Self {
        Self {
            io,
            shared: activity.0.clone(),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Noting<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.shared.spoke.store(true, Ordering::Release);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Noting<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// hyper's timer for one connection (give it to that connection's builder only).
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer(Arc<Shared>);

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let code = self.0.encode(deadline);
        self.0.deadline.store(code, Ordering::Release);
        Box::pin(HeadSleep {
            shared: self.0.clone(),
            code,
        })
    }

    fn now(&self) -> Instant {
        now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(mut head) => {
                let code = self.0.encode(new_deadline);
                head.code = code;
                self.0.deadline.store(code, Ordering::Release);
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A head read in progress. It never completes and wakes nobody (reading the clock on every
/// poll would cost what this module saves): the [`Watchdog`] ends the connection instead.
struct HeadSleep {
    shared: Arc<Shared>,
    code: u64,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        // Clear only our own deadline: a replacement may already have recorded a newer one.
        let _ = self.shared.deadline.compare_exchange(
            self.code,
            NONE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// How long the watchdog waits again when a deadline has passed but the client's bytes wait
/// unread in the socket (this process is slower than the client, not the other way round).
const UNREAD_GRACE: Duration = Duration::from_millis(100);

/// Ends a connection whose first byte or request head is late.
#[derive(Debug)]
pub(crate) struct Watchdog(Arc<Shared>);

impl Watchdog {
    /// Completes when the connection has sent nothing by its first-byte deadline, or a head
    /// read has been in progress past its deadline, and nothing it sent waits unread. While no
    /// head is being read (a request is being answered) it looks again every `period`. The
    /// caller stops polling it when the connection ends.
    pub(crate) async fn expired(self, period: Duration) {
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        let activity = Activity(self.0.clone());
        loop {
            let now = now();
            let silent = !self.0.spoke.load(Ordering::Acquire);
            let late = (silent && self.0.first_byte_by <= now)
                || self.0.deadline().is_some_and(|d| d <= now);
            let mut next = if late {
                if !activity.pending() {
                    return;
                }
                now + UNREAD_GRACE
            } else {
                match self.0.deadline() {
                    Some(deadline) => deadline,
                    None => now + period,
                }
            };
            if silent && self.0.first_byte_by > now {
                next = next.min(self.0.first_byte_by);
            }
            sleep.as_mut().reset(next.into());
            sleep.as_mut().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_head_read_past_its_deadline_expires_the_watchdog() {
        let (timer, watchdog, _) = pair(Duration::from_secs(3600), None);
        let watch = tokio::spawn(watchdog.expired(Duration::from_secs(5)));
        let head = timer.sleep(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(4_999)).await;
        assert!(!watch.is_finished());
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
        drop(head);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_heads_keep_the_connection_open() {
        let (timer, watchdog, _) = pair(Duration::from_secs(3600), None);
        let watch = tokio::spawn(watchdog.expired(Duration::from_secs(5)));
        // Forty requests, each head taking a second and its answer a second: 80 s, never late.
        for _ in 0..40 {
            let head = timer.sleep(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(head);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!watch.is_finished());
        // Then the client goes quiet with a head read started: closed 5 s later.
        let _idle = timer.sleep(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5_001)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_says_nothing_is_late_at_the_first_byte_deadline() {
        let (_timer, watchdog, activity) = pair(Duration::from_secs(1), None);
        let watch = tokio::spawn(watchdog.expired(Duration::from_secs(5)));
        assert!(activity.waiting());
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(!watch.is_finished());
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline() {
        let (timer, _watchdog, _) = pair(Duration::from_secs(3600), None);
        let mut head = timer.sleep(Duration::from_secs(1));
        timer.reset(&mut head, now() + Duration::from_secs(10));
        let deadline = timer.0.deadline().expect("a head read is recorded");
        assert!(deadline > now() + Duration::from_secs(9));
        drop(head);
        assert_eq!(timer.0.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_replaced_sleep_keeps_the_newer_deadline() {
        let (timer, _watchdog, _) = pair(Duration::from_secs(3600), None);
        let old = timer.sleep(Duration::from_secs(1));
        let new = timer.sleep(Duration::from_secs(2));
        drop(old);
        assert!(timer.0.deadline().is_some());
        drop(new);
        assert!(timer.0.deadline().is_none());
    }
}
