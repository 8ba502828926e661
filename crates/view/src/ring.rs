//! A ring of the last N records of something, each numbered as it comes (1, 2, ...), read by
//! the number of the last one a reader has: the agent's flow log, the DNS pods' lookups.
//! Memory is bounded whoever reads, and a reader that falls behind misses the oldest.

use std::collections::VecDeque;

pub struct Ring<T> {
    /// The last record's number.
    last: u64,
    records: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> Ring<T> {
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            last: 0,
            records: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// Adds the record `make` returns for its number, dropping the oldest when full.
    pub fn push(&mut self, make: impl FnOnce(u64) -> T) {
        self.push_reusing(|_, n| make(n));
    }

    /// [`Ring::push`] for records that own buffers: `fill` gets the record that makes room (the
    /// oldest, when the ring is full) to refill in place, so a full ring allocates nothing
    /// more.
    pub fn push_reusing(&mut self, fill: impl FnOnce(Option<T>, u64) -> T) {
        self.last += 1;
        let old = if self.records.len() == self.capacity {
            self.records.pop_front()
        } else {
            None
        };
        self.records.push_back(fill(old, self.last));
    }

    /// The records after number `seq`, oldest first, at most `page` (the newest when more).
    /// A `seq` beyond the last is a reader of an earlier life of the process: it gets them all.
    pub fn since(&self, seq: u64, page: usize) -> Vec<T> {
        // Numbers are consecutive: the records after `seq` are the ring's last ones.
        let newer = match self.last.checked_sub(seq) {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let take = newer.min(self.records.len()).min(page);
        self.records
            .range(self.records.len() - take..)
            .cloned()
            .collect()
    }

    /// How many it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_the_newest_after_theirs() {
        let mut r = Ring::new(5);
        for _ in 0..8 {
            r.push(|n| n);
        }
        assert_eq!(r.len(), 5);
        assert_eq!(r.since(0, 10), [4, 5, 6, 7, 8]);
        assert_eq!(r.since(6, 10), [7, 8]);
        assert_eq!(r.since(0, 2), [7, 8]);
        assert!(r.since(8, 10).is_empty());
        // From before a restart: everything there is.
        assert_eq!(r.since(100, 10), [4, 5, 6, 7, 8]);
        // Room is made with the oldest record.
        let mut given = Vec::new();
        r.push_reusing(|old, n| {
            given.push(old);
            n * 10
        });
        assert_eq!(given, [Some(4)]);
        assert_eq!(r.since(8, 10), [90]);
    }
}
