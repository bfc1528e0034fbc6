//! Coalescing: the fewest reads that cover every register a sample needs.
//!
//! Per table, ranges sorted by address are merged while the merged read stays within
//! [`crate::MAX_READ`] registers (2000 bits for coils and discrete inputs) and the hole
//! between two ranges is at most the profile's `max_gap` registers: reading a few unused
//! registers is cheaper than another request, but some devices refuse a read that spans
//! unmapped addresses (exception 02), so the gap is the profile's to set (0: never read
//! across a hole).

use crate::{Table, MAX_READ};

/// One request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// The table (and so the function code).
    pub table: Table,
    /// The first address.
    pub start: u16,
    /// Registers (or bits) to read.
    pub count: u16,
}

/// Coalesces `(table, start, count)` ranges into reads.
#[must_use]
pub fn coalesce(ranges: &[(Table, u16, u16)], max_gap: u16) -> Vec<Read> {
    let mut sorted: Vec<(Table, u32, u32)> = ranges
        .iter()
        .map(|&(t, s, c)| (t, u32::from(s), u32::from(s) + u32::from(c)))
        .collect();
    sorted.sort_unstable();
    let mut reads: Vec<(Table, u32, u32)> = Vec::new();
    for (t, s, e) in sorted {
        let max = if t.is_bits() {
            2000
        } else {
            u32::from(MAX_READ)
        };
        match reads.last_mut() {
            Some((lt, ls, le))
                if *lt == t && s <= *le + u32::from(max_gap) && e.max(*le) - *ls <= max =>
            {
                *le = e.max(*le);
            }
            _ => reads.push((t, s, e)),
        }
    }
    reads
        .into_iter()
        .map(|(table, s, e)| Read {
            table,
            start: s as u16,
            count: (e - s) as u16,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ranges_make_one_read() {
        let r: Vec<_> = (0..10).map(|i| (Table::Input, 100 + 2 * i, 2)).collect();
        assert_eq!(
            coalesce(&r, 0),
            [Read {
                table: Table::Input,
                start: 100,
                count: 20
            }]
        );
    }

    #[test]
    fn gaps_tables_and_the_125_limit_split_reads() {
        let r = [
            (Table::Holding, 0, 2),
            (Table::Holding, 10, 2),
            (Table::Holding, 120, 10),
            (Table::Input, 0, 1),
        ];
        assert_eq!(coalesce(&r, 7).len(), 4, "gap of 8 > 7");
        let two = coalesce(&r, 8);
        assert_eq!(two.len(), 3);
        assert_eq!(two[0].count, 12);
        // 0..130 would be 130 registers: over 125 even with any gap allowed.
        let big = coalesce(&r, 124);
        assert!(big.iter().all(|x| x.count <= MAX_READ), "{big:?}");
        assert_eq!(big.len(), 3);
        // Every range is covered.
        for (t, s, c) in r {
            assert!(big
                .iter()
                .any(|x| x.table == t && x.start <= s && s + c <= x.start + x.count));
        }
    }
}
