//! How a party exchanges messages with its two neighbours.
//!
//! Protocols only ever talk to the next or the previous party of the ring
//! (`P_i → P_{i±1}`), so a transport is addressed by [`Dir`].  Messages are
//! vectors of 64-bit words: ring elements, or bit-packed boolean shares; the
//! network transport serialises them little-endian.

use std::sync::mpsc::{Receiver, Sender, channel};

/// A neighbour of this party on the ring `P0 → P1 → P2 → P0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Next,
    Prev,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the {0:?} party disconnected")]
    Disconnected(Dir),
    #[error("link to the {dir:?} party failed: {reason}")]
    Link { dir: Dir, reason: String },
}

/// A bidirectional message link to both neighbours.  `send` must not block on
/// the receiver (both neighbours may send to each other in the same round).
pub trait Transport: Send {
    fn send(&mut self, to: Dir, msg: Vec<u64>) -> Result<(), TransportError>;
    fn recv(&mut self, from: Dir) -> Result<Vec<u64>, TransportError>;
}

/// In-memory transport: three parties as threads of one process.
pub struct MemTransport {
    to_next: Sender<Vec<u64>>,
    to_prev: Sender<Vec<u64>>,
    from_next: Receiver<Vec<u64>>,
    from_prev: Receiver<Vec<u64>>,
}

impl MemTransport {
    /// Links for P0, P1, P2, in that order.
    pub fn triple() -> [MemTransport; 3] {
        // fwd[i]: P_i → P_{i+1};  bwd[i]: P_{i+1} → P_i.
        let (fwd_tx, fwd_rx): (Vec<_>, Vec<_>) = (0..3).map(|_| channel()).unzip();
        let (bwd_tx, bwd_rx): (Vec<_>, Vec<_>) = (0..3).map(|_| channel()).unzip();
        let mut fwd_rx: Vec<Option<Receiver<Vec<u64>>>> = fwd_rx.into_iter().map(Some).collect();
        let mut bwd_rx: Vec<Option<Receiver<Vec<u64>>>> = bwd_rx.into_iter().map(Some).collect();
        std::array::from_fn(|i| {
            let prev = (i + 2) % 3;
            MemTransport {
                to_next: fwd_tx[i].clone(),
                to_prev: bwd_tx[prev].clone(),
                from_next: bwd_rx[i].take().expect("taken once"),
                from_prev: fwd_rx[prev].take().expect("taken once"),
            }
        })
    }
}

impl Transport for MemTransport {
    fn send(&mut self, to: Dir, msg: Vec<u64>) -> Result<(), TransportError> {
        let tx = match to {
            Dir::Next => &self.to_next,
            Dir::Prev => &self.to_prev,
        };
        tx.send(msg).map_err(|_| TransportError::Disconnected(to))
    }

    fn recv(&mut self, from: Dir) -> Result<Vec<u64>, TransportError> {
        let rx = match from {
            Dir::Next => &self.from_next,
            Dir::Prev => &self.from_prev,
        };
        rx.recv().map_err(|_| TransportError::Disconnected(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_right_neighbour() {
        let mut t = MemTransport::triple();
        for (i, ti) in t.iter_mut().enumerate() {
            ti.send(Dir::Next, vec![i as u64]).unwrap();
            ti.send(Dir::Prev, vec![10 + i as u64]).unwrap();
        }
        for i in 0..3u64 {
            let (next, prev) = ((i + 1) % 3, (i + 2) % 3);
            assert_eq!(t[i as usize].recv(Dir::Prev).unwrap(), vec![prev]);
            assert_eq!(t[i as usize].recv(Dir::Next).unwrap(), vec![10 + next]);
        }
    }

    #[test]
    fn a_dropped_peer_is_an_error_not_a_hang() {
        let [mut a, b, c] = MemTransport::triple();
        drop(b);
        drop(c);
        assert!(matches!(
            a.recv(Dir::Next),
            Err(TransportError::Disconnected(Dir::Next))
        ));
    }
}
