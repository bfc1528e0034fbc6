//! The machine's cores, when the nodes share some. The wide-area testbed runs its 64 node
//! processes and its link emulator on 2 cores: a block waits for a core at every hop, and
//! every vote's signature check holds one. With `--cores K` the simulator models that; by
//! default every node has a core of its own and work costs only `--hop-ms`.

/// Cores shared by every node, each with the time it is next free.
#[derive(Debug, Default)]
pub struct Cpu {
    free_us: Vec<u64>,
}

impl Cpu {
    /// `cores` shared cores; 0: none shared (work never waits).
    #[must_use]
    pub fn new(cores: usize) -> Self {
        Cpu {
            free_us: vec![0; cores],
        }
    }

    /// Work of `cost_us` that may start at `now_ms`, on the core free first (the lowest
    /// numbered of those free as early): when it ends, in ms (rounded up). Without shared
    /// cores, `now_ms`.
    pub fn run(&mut self, now_ms: u64, cost_us: u64) -> u64 {
        let Some((_, free)) = self
            .free_us
            .iter_mut()
            .enumerate()
            .min_by_key(|(i, f)| (**f, *i))
        else {
            return now_ms;
        };
        let end = (*free).max(now_ms.saturating_mul(1000)) + cost_us;
        *free = end;
        end.div_ceil(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_waits_for_a_free_core_and_none_waits_without_shared_cores() {
        let mut none = Cpu::new(0);
        assert_eq!(none.run(5, 1_000_000), 5);
        let mut two = Cpu::new(2);
        // Two cores: two pieces of work at once, the third waits for the first to end.
        assert_eq!(two.run(10, 4_000), 14);
        assert_eq!(two.run(10, 6_000), 16);
        assert_eq!(
            two.run(10, 1_500),
            16,
            "waits until 14 ms, then 1.5 ms, rounded up"
        );
        // Work that comes after every core is free again starts at once.
        assert_eq!(two.run(100, 500), 101);
    }
}
