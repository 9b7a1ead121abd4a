//! The window of tasks a lazy `map` keeps in flight, handed back either in submission order
//! (`map`) or in finishing order (`map_unordered`). Both pools' `Map` iterators use it; each
//! entry carries the pool's own extra data `X` (for example a chunk's item count).

use crate::task::Task;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Instant;

/// Tasks in flight, with a per-task extra.
pub(crate) struct Window<T, X> {
    order: Order<T, X>,
    len: usize,
}

enum Order<T, X> {
    /// Handed back in submission order.
    Submitted(VecDeque<(Task<T>, X)>),
    /// Handed back in finishing order: each task's done-callback sends its slot index.
    Finished {
        slots: Vec<Option<(Task<T>, X)>>,
        free: Vec<usize>,
        tx: mpsc::Sender<usize>,
        rx: mpsc::Receiver<usize>,
    },
}

/// `Window::next` ran out of time.
pub(crate) struct Expired;

impl<T: Send + 'static, X> Window<T, X> {
    pub(crate) fn new(unordered: bool) -> Self {
        let order = if unordered {
            let (tx, rx) = mpsc::channel();
            Order::Finished {
                slots: Vec::new(),
                free: Vec::new(),
                tx,
                rx,
            }
        } else {
            Order::Submitted(VecDeque::new())
        };
        Window { order, len: 0 }
    }

    /// Adds a task to the window.
    pub(crate) fn push(&mut self, task: Task<T>, extra: X) {
        self.len += 1;
        match &mut self.order {
            Order::Submitted(q) => q.push_back((task, extra)),
            Order::Finished {
                slots, free, tx, ..
            } => {
                let i = free.pop().unwrap_or(slots.len());
                let tx = tx.clone();
                task.on_done(move || {
                    // The receiver lives as long as the window; a send after it is dropped
                    // has nobody to tell.
                    let _ = tx.send(i);
                });
                if i == slots.len() {
                    slots.push(Some((task, extra)));
                } else {
                    slots[i] = Some((task, extra));
                }
            }
        }
    }

    /// The next task to hand out, finished, waiting at most until `deadline`. `None` when the
    /// window is empty.
    pub(crate) fn next(
        &mut self,
        deadline: Option<Instant>,
    ) -> Option<Result<(Task<T>, X), Expired>> {
        if self.len == 0 {
            return None;
        }
        let entry = match &mut self.order {
            Order::Submitted(q) => {
                let (task, _) = q.front()?;
                if !task.wait_until(deadline) {
                    return Some(Err(Expired));
                }
                q.pop_front()?
            }
            Order::Finished {
                slots, free, rx, ..
            } => loop {
                let i = match deadline {
                    None => rx.recv().ok()?,
                    Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                        Ok(i) => i,
                        Err(_) => return Some(Err(Expired)),
                    },
                };
                if let Some(entry) = slots.get_mut(i).and_then(Option::take) {
                    free.push(i);
                    // The callback runs before the value is released to the owner.
                    entry.0.wait();
                    break entry;
                }
            },
        };
        self.len -= 1;
        Some(Ok(entry))
    }
}

impl<T, X> Window<T, X> {
    /// How many tasks are in flight.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes every task still in flight out of the window.
    pub(crate) fn drain(&mut self) -> Vec<(Task<T>, X)> {
        self.len = 0;
        match &mut self.order {
            Order::Submitted(q) => q.drain(..).collect(),
            Order::Finished { slots, free, .. } => {
                free.clear();
                slots.drain(..).flatten().collect()
            }
        }
    }
}
