//! A rendezvous of the worker threads between phases (every connection connected; every
//! worker done), which a worker that exits — normally or by panicking — can never block.
//!
//! Each worker records the highest phase it has reached; `wait(phase)` returns once every
//! worker has reached `phase`. A worker that leaves (its [`GateSeat`] is dropped) counts as
//! having reached every phase, so the others never wait for a thread that is gone.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The phases the workers meet at, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Every connection (active and idle) is connected or has failed.
    Connected = 1,
    /// Every active connection has finished; idle connections may now close.
    Finished = 2,
}

/// Left by a worker that has exited.
const GONE: u8 = u8::MAX;

#[derive(Debug)]
pub(crate) struct Gate {
    reached: Mutex<Vec<u8>>,
    changed: Condvar,
}

impl Gate {
    pub(crate) fn new(workers: usize) -> Gate {
        Gate {
            reached: Mutex::new(vec![0; workers]),
            changed: Condvar::new(),
        }
    }

    /// Worker `worker`'s seat: [`GateSeat::wait`] at each phase; dropping it leaves the gate.
    pub(crate) fn seat(&self, worker: usize) -> GateSeat<'_> {
        GateSeat { gate: self, worker }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.reached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, worker: usize, phase: u8) {
        let mut reached = self.lock();
        reached[worker] = reached[worker].max(phase);
        drop(reached);
        self.changed.notify_all();
    }
}

/// One worker's place at the [`Gate`].
#[derive(Debug)]
pub(crate) struct GateSeat<'a> {
    gate: &'a Gate,
    worker: usize,
}

impl GateSeat<'_> {
    /// Marks `phase` reached by this worker and blocks until every worker has reached it.
    pub(crate) fn wait(&self, phase: Phase) {
        let phase = phase as u8;
        self.gate.set(self.worker, phase);
        let mut reached = self.gate.lock();
        while reached.iter().any(|r| *r < phase) {
            reached = self
                .gate
                .changed
                .wait(reached)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for GateSeat<'_> {
    fn drop(&mut self) {
        self.gate.set(self.worker, GONE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_waits_for_every_worker() {
        let gate = Gate::new(3);
        std::thread::scope(|s| {
            for w in 0..3 {
                let gate = &gate;
                s.spawn(move || {
                    let seat = gate.seat(w);
                    seat.wait(Phase::Connected);
                    // Nobody passes before all three have arrived.
                    assert!(gate.lock().iter().all(|r| *r >= Phase::Connected as u8));
                    seat.wait(Phase::Finished);
                });
            }
        });
    }

    #[test]
    fn gate_worker_gone_does_not_block_the_rest() {
        let gate = Gate::new(2);
        std::thread::scope(|s| {
            let dying = s.spawn(|| {
                let _seat = gate.seat(0);
                panic!("worker 0 dies before the first phase (expected by this test)");
            });
            let seat = gate.seat(1);
            seat.wait(Phase::Connected);
            seat.wait(Phase::Finished);
            assert!(dying.join().is_err());
        });
    }
}
