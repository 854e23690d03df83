//! A timer kept for the life of a browser connection and lent to its requests one at a time.
//!
//! Every signed-in request needs two deadlines: hyper's for reading its head
//! (`server.header_read_timeout`) and the proxy's for the backend's answer (the site's
//! `response_timeout`). A fresh tokio `Sleep` per deadline enters the runtime's timer wheel
//! on its first poll and leaves it when dropped, each time under the timer's lock; hyper
//! also boxes a new one per request. The two together cost about 2 600 of the 53 200
//! instructions of a signed-in request (`bench/instructions.sh`). A `Sleep` that is kept and
//! given a later deadline stays in the wheel: moving its deadline later is one atomic update,
//! and tokio files it again only when the old deadline comes round.
//!
//! So each connection keeps one [`TimerSlot`] per kind of deadline. A request borrows its
//! `Sleep` ([`TimerSlot::lend`]) and the [`Lent`] sleep goes back to the slot when dropped.
//! A second request in flight at the same time (HTTP/2 streams) finds the slot empty and gets
//! a fresh `Sleep`, as before. The deadlines themselves are unchanged: each one is set anew,
//! from now, for each request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One reusable `Sleep`, shared by a connection and its requests (a clone is a handle to the
/// same slot).
#[derive(Clone, Default)]
pub struct TimerSlot(Arc<Mutex<Option<Pin<Box<Sleep>>>>>);

impl TimerSlot {
    pub fn new() -> TimerSlot {
        TimerSlot::default()
    }

    /// A sleep that ends at `deadline`: the slot's own when it is free, a fresh one otherwise.
    pub fn lend(&self, deadline: Instant) -> Lent {
        let spare = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Lent {
            sleep: Some(sleep),
            slot: self.clone(),
        }
    }

    /// A sleep that ends `duration` from now.
    pub fn lend_for(&self, duration: Duration) -> Lent {
        self.lend(Instant::now() + duration)
    }
}

/// A sleep borrowed from a [`TimerSlot`]; dropped, it goes back there (still in the timer
/// wheel, to be given a later deadline by the next request).
pub struct Lent {
    /// `Some` until dropped.
    sleep: Option<Pin<Box<Sleep>>>,
    slot: TimerSlot,
}

impl Lent {
    /// Move the deadline (later is the cheap way).
    fn reset(&mut self, deadline: Instant) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(deadline);
        }
    }
}

impl Future for Lent {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            // Not reached (`None` only once dropped); if it were, the deadline has passed.
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut spare = self.slot.0.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_none() {
            *spare = self.sleep.take();
        }
    }
}

impl hyper::rt::Sleep for Lent {}

/// hyper's timer for one connection (its head-read deadline): every head borrows the slot's
/// sleep instead of registering a new one. Like hyper-util's `TokioTimer`, it tells time by
/// tokio's clock.
impl hyper::rt::Timer for TimerSlot {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.lend_for(duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.lend(deadline.into()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<Lent>() {
            Some(mut lent) => lent.reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lent_sleep_ends_at_its_own_deadline_each_time() {
        let slot = TimerSlot::new();
        for round in 0..3 {
            let start = tokio::time::Instant::now();
            slot.lend_for(Duration::from_secs(10)).await;
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_010),
                "round {round}: waited {waited:?}"
            );
        }
        // A sleep given back early (its request was answered) keeps no old deadline.
        drop(slot.lend_for(Duration::from_millis(5)));
        let start = tokio::time::Instant::now();
        slot.lend_for(Duration::from_secs(2)).await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_sleep_is_not_ended_by_its_earlier_deadline() {
        let slot = TimerSlot::new();
        // Registered in the wheel with a deadline at 1 s, then given back.
        let mut first = slot.lend_for(Duration::from_secs(1));
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        tokio::time::advance(Duration::from_millis(500)).await;
        // Lent again for 1 s from now: it must not end at the old deadline (1 s after start).
        let start = tokio::time::Instant::now();
        slot.lend_for(Duration::from_secs(1)).await;
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn two_at_once_each_get_a_sleep() {
        let slot = TimerSlot::new();
        let short = slot.lend_for(Duration::from_secs(1));
        let long = slot.lend_for(Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        short.await;
        assert!(
            start.elapsed() >= Duration::from_secs(1) && start.elapsed() < Duration::from_secs(3)
        );
        long.await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }

    fn poll_once(f: &mut Lent) -> Poll<()> {
        let waker = std::task::Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }
}
