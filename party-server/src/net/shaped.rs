//! An emulated LAN for in-process benchmarks: the in-memory links with a
//! link rate and a one-way delay added, as `tc netem delay D rate R` does on
//! each party's egress in `scripts/lan.sh`.
//!
//! Why in process: this kernel has no netem, so `scripts/lan.sh` can shape
//! the rate but add no delay, and it needs root and network namespaces.  The
//! shaper models each party's egress as one queue served at `rate`, as
//! `lan.sh` shapes each namespace's one interface (messages to both
//! neighbours share it): a message of `b` bytes sent at `t` leaves the queue
//! at `max(t, queue free) + 8b/rate` and is delivered `delay` later.
//! Senders never block (as with netem's queue); the receiver waits until
//! the delivery time.  Substreams share the queue, as concurrent
//! sub-protocols share one wire.  The three parties still share this
//! machine's cores, which a real LAN would not: a delay that elapses while
//! its receiver waits for a core costs nothing here.

use crate::mpc::{Dir, Transport, TransportError};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rate and one-way delay of every link between two parties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lan {
    pub bits_per_second: f64,
    pub one_way_delay: Duration,
}

impl Lan {
    /// The paper's LAN (and `scripts/lan.sh`'s default): 1 Gbit/s, RTT 0.1 ms.
    pub const PAPER: Lan = Lan {
        bits_per_second: 1e9,
        one_way_delay: Duration::from_micros(50),
    };

    /// When a message of `bytes` sent `now` is delivered, given the time at
    /// which the link finishes what it already carries; updates that time.
    fn deliver_at(&self, now: Duration, link_free: &mut Duration, bytes: usize) -> Duration {
        let wire = Duration::from_secs_f64(8.0 * bytes as f64 / self.bits_per_second);
        *link_free = (*link_free).max(now) + wire;
        *link_free + self.one_way_delay
    }
}

/// A party's link with the LAN added: each message carries its delivery
/// time (as nanoseconds since a common epoch) in one extra trailing word,
/// which the receiving shaper strips; the byte counters never see it.
pub struct ShapedTransport {
    inner: Box<dyn Transport>,
    lan: Lan,
    epoch: Instant,
    /// When this party's egress queue has sent all it holds (since `epoch`).
    egress: Arc<Mutex<Duration>>,
}

/// Shapes the three parties' links (in party order) with `lan`.
pub fn shape(links: [Box<dyn Transport>; 3], lan: Lan) -> [Box<dyn Transport>; 3] {
    let epoch = Instant::now();
    links.map(|inner| {
        Box::new(ShapedTransport {
            inner,
            lan,
            epoch,
            egress: Arc::default(),
        }) as Box<dyn Transport>
    })
}

thread_local! {
    static FINE_TIMER: Cell<bool> = const { Cell::new(false) };
}

/// Sleeps until `deadline`.  The thread's timer slack is set to 1 ns first
/// (once per thread): Linux's default 50 µs slack would add as much as the
/// emulated delay itself to every round.
fn sleep_until(deadline: Instant) {
    FINE_TIMER.with(|set| {
        if !set.get() {
            // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer and only
            // affects the calling thread; failure leaves the default slack.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            set.set(true);
        }
    });
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

impl Transport for ShapedTransport {
    fn send(&mut self, to: Dir, mut msg: Vec<u64>) -> Result<(), TransportError> {
        let now = self.epoch.elapsed();
        let at = {
            let mut free = self.egress.lock().expect("egress lock");
            self.lan.deliver_at(now, &mut free, 8 * msg.len())
        };
        msg.push(at.as_nanos() as u64);
        self.inner.send(to, msg)
    }

    fn recv(&mut self, from: Dir) -> Result<Vec<u64>, TransportError> {
        let mut msg = self.inner.recv(from)?;
        let at = msg.pop().ok_or(TransportError::Link {
            dir: from,
            reason: "shaped message without its delivery time".into(),
        })?;
        sleep_until(self.epoch + Duration::from_nanos(at));
        Ok(msg)
    }

    fn substream(&mut self, tag: u64) -> Result<Box<dyn Transport>, TransportError> {
        Ok(Box::new(ShapedTransport {
            inner: self.inner.substream(tag)?,
            lan: self.lan,
            epoch: self.epoch,
            egress: self.egress.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::local::mem_links;

    #[test]
    fn a_message_waits_for_its_queue_then_the_delay() {
        let lan = Lan {
            bits_per_second: 8e6, // one byte per µs
            one_way_delay: Duration::from_micros(50),
        };
        let mut free = Duration::ZERO;
        let us = Duration::from_micros;
        assert_eq!(lan.deliver_at(us(10), &mut free, 100), us(160));
        // Sent while the first is on the wire: queued behind it.
        assert_eq!(lan.deliver_at(us(20), &mut free, 100), us(260));
        // Sent after the link went idle.
        assert_eq!(lan.deliver_at(us(1000), &mut free, 0), us(1050));
    }

    #[test]
    fn shaped_links_deliver_intact_and_not_before_time() {
        let lan = Lan {
            bits_per_second: 8e8, // 100 MB/s: 1 MB takes 10 ms on the wire
            one_way_delay: Duration::from_millis(5),
        };
        let [mut a, mut b, mut c] = shape(mem_links(), lan);
        let t = Instant::now();
        a.send(Dir::Next, vec![7; 125_000]).unwrap();
        a.send(Dir::Prev, vec![8; 125_000]).unwrap();
        assert_eq!(b.recv(Dir::Prev).unwrap(), vec![7; 125_000]);
        let first = t.elapsed();
        // The second message queued behind the first on P0's one egress.
        assert_eq!(c.recv(Dir::Next).unwrap(), vec![8; 125_000]);
        let second = t.elapsed();
        assert!(first >= Duration::from_millis(15), "{first:?}");
        assert!(second >= Duration::from_millis(25), "{second:?}");
        let mut sa = a.substream(3).unwrap();
        let mut sb = b.substream(3).unwrap();
        sa.send(Dir::Next, vec![1, 2]).unwrap();
        assert_eq!(sb.recv(Dir::Prev).unwrap(), vec![1, 2]);
    }
}
