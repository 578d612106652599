//! The SHA-256 of a file's content as it crosses the gateway in pieces that carry their
//! offsets (SFTP reads and writes). Pieces usually arrive in order; a few out of order are
//! held back until the gap before them fills. A transfer that does not cover the file from
//! offset 0 without gaps or overlaps has no digest, and says why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Bytes one digest holds back waiting for a gap to fill before it is given up.
const HOLD_LIMIT: usize = 16 * 1024 * 1024;

/// Bytes all the digests of one channel hold back together (a client with many files
/// open, each written out of order, is held to this, not to a multiple of it).
const CHANNEL_HOLD_LIMIT: usize = 64 * 1024 * 1024;

/// What the digests of one channel may still hold back; clones share it.
#[derive(Clone, Debug)]
pub struct HoldBudget(Arc<AtomicUsize>);

impl Default for HoldBudget {
    fn default() -> Self {
        HoldBudget(Arc::new(AtomicUsize::new(CHANNEL_HOLD_LIMIT)))
    }
}

impl HoldBudget {
    /// Takes `n` bytes of the budget, if that many are left.
    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| {
                free.checked_sub(n)
            })
            .is_ok()
    }

    /// Gives `n` bytes back.
    fn give(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes left.
    #[cfg(test)]
    fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running digest over offset-tagged pieces.
#[derive(Default)]
pub struct OrderedDigest {
    hasher: Sha256,
    /// The offset the next in-order piece starts at.
    next: u64,
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
    /// Bytes seen, in order or not.
    total: u64,
    broken: Option<String>,
    budget: HoldBudget,
}

impl Drop for OrderedDigest {
    fn drop(&mut self) {
        self.budget.give(self.held_bytes);
    }
}

/// What a finished digest says.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    /// Bytes transferred.
    pub bytes: u64,
    /// The hex SHA-256 of bytes 0..`bytes`, or why there is none.
    pub sha256: Result<String, String>,
}

impl OrderedDigest {
    /// A digest whose held-back pieces count against `budget` (its channel's).
    pub fn within(budget: HoldBudget) -> Self {
        let mut d = OrderedDigest::default();
        d.budget = budget;
        d
    }

    /// Adds the piece `data` found at `offset`.
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        self.total += data.len() as u64;
        if self.broken.is_some() || data.is_empty() {
            return;
        }
        if offset > self.next {
            if self.held_bytes + data.len() <= HOLD_LIMIT && self.budget.take(data.len()) {
                self.held_bytes += data.len();
                if let Some(replaced) = self.held.insert(offset, data.to_vec()) {
                    self.held_bytes -= replaced.len();
                    self.budget.give(replaced.len());
                    self.give_up(format!("offset {offset} was transferred twice"));
                }
            } else {
                self.give_up(format!("no data for offset {} onwards", self.next));
            }
            return;
        }
        if offset < self.next {
            self.give_up(format!("offset {offset} was transferred twice"));
            return;
        }
        self.hasher.update(data);
        self.next += data.len() as u64;
        while let Some(entry) = self.held.first_entry() {
            let at = *entry.key();
            if at > self.next {
                break;
            }
            let piece = entry.remove();
            self.held_bytes -= piece.len();
            self.budget.give(piece.len());
            if at < self.next {
                self.give_up(format!("offset {at} was transferred twice"));
                return;
            }
            self.hasher.update(&piece);
            self.next += piece.len() as u64;
        }
    }

    fn give_up(&mut self, why: String) {
        self.broken = Some(why);
        self.held.clear();
        self.budget.give(self.held_bytes);
        self.held_bytes = 0;
    }

    /// Whether any byte went through.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The byte count and digest.
    pub fn finish(mut self) -> Summary {
        let sha256 = match (self.broken.take(), self.held.keys().next()) {
            (Some(why), _) => Err(why),
            (None, Some(_)) => Err(format!("no data for offset {} onwards", self.next)),
            (None, None) => Ok(hex(&std::mem::take(&mut self.hasher).finalize())),
        };
        Summary {
            bytes: self.total,
            sha256,
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a stream (scp's files arrive whole and in order).
#[derive(Default)]
pub struct StreamDigest {
    hasher: Sha256,
    bytes: u64,
}

impl StreamDigest {
    /// Adds the next bytes.
    pub fn add(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// The byte count and digest.
    pub fn finish(self) -> Summary {
        Summary {
            bytes: self.bytes,
            sha256: Ok(hex(&self.hasher.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    #[test]
    fn pieces_in_order_hash_like_the_whole() {
        let mut d = OrderedDigest::default();
        d.add(0, b"hello ");
        d.add(6, b"world");
        assert_eq!(d.finish().sha256, Ok(sha(b"hello world")));
    }

    #[test]
    fn pieces_out_of_order_are_held_until_the_gap_fills() {
        let mut d = OrderedDigest::default();
        d.add(6, b"world");
        d.add(11, b"!");
        d.add(0, b"hello ");
        let s = d.finish();
        assert_eq!(s.bytes, 12);
        assert_eq!(s.sha256, Ok(sha(b"hello world!")));
    }

    #[test]
    fn a_gap_or_an_overlap_leaves_no_digest_and_says_why() {
        let mut gap = OrderedDigest::default();
        gap.add(0, b"abc");
        gap.add(10, b"def");
        assert_eq!(
            gap.finish().sha256,
            Err("no data for offset 3 onwards".into())
        );
        let mut twice = OrderedDigest::default();
        twice.add(0, b"abc");
        twice.add(1, b"bc");
        assert_eq!(
            twice.finish().sha256,
            Err("offset 1 was transferred twice".into())
        );
    }

    #[test]
    fn holding_back_is_bounded() {
        let mut d = OrderedDigest::default();
        let piece = vec![0u8; 1024 * 1024];
        for i in 1..=20u64 {
            d.add(i * piece.len() as u64, &piece);
        }
        assert!(d.held_bytes <= HOLD_LIMIT);
        assert!(d.finish().sha256.is_err());
    }

    #[test]
    fn a_channels_digests_share_one_bound_and_give_it_back() {
        let budget = HoldBudget::default();
        let piece = vec![0u8; 8 * 1024 * 1024];
        let mut files: Vec<OrderedDigest> = (0..10)
            .map(|_| OrderedDigest::within(budget.clone()))
            .collect();
        for f in &mut files {
            f.add(piece.len() as u64, &piece);
        }
        // Eight of them fit in the channel's 64 MiB; the last two gave up.
        assert_eq!(budget.left(), 0);
        assert!(files[9].broken.is_some() && files[7].broken.is_none());
        // The gap filled: the held piece is hashed and its bytes are free again.
        files[0].add(0, &piece);
        assert_eq!(budget.left(), piece.len());
        drop(files);
        assert_eq!(budget.left(), CHANNEL_HOLD_LIMIT);
    }

    #[test]
    fn a_stream_digest_is_the_plain_sha256() {
        let mut s = StreamDigest::default();
        s.add(b"ab");
        s.add(b"c");
        assert_eq!(s.finish().sha256, Ok(sha(b"abc")));
    }
}
