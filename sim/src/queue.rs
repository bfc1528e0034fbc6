//! Simulated time: events in the order of their time, then of their making, so that a seed
//! replays them alike. The heap holds small keys; the events wait in a slab beside it (a
//! thousand nodes' events are moved once, not at every step of the heap).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Timed events.
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> std::fmt::Debug for Queue<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({} events)", self.heap.len())
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<E> Queue<E> {
    /// `event` at time `at` (ms).
    pub fn at(&mut self, at: u64, event: E) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(event);
                i
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slab.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((at, event))
    }

    /// Events waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True if none waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_by_time_then_by_making() {
        let mut q = Queue::default();
        q.at(5, "b");
        q.at(1, "a");
        q.at(5, "c");
        q.at(3, "x");
        let first = q.pop();
        q.at(4, "y");
        let mut order: Vec<&str> = first.into_iter().map(|(_, e)| e).collect();
        order.extend(std::iter::from_fn(|| q.pop().map(|(_, e)| e)));
        assert_eq!(order, ["a", "x", "y", "b", "c"]);
        assert!(q.is_empty());
    }
}
