//! The SACK scoreboard of the sender (RFC 2018, RFC 6675 §3 and §4).
//!
//! It holds the ranges the peer reported as received above SND.UNA, merged, sorted
//! and bounded: at most [`MAX_RANGES`]. Past that the highest ranges are dropped,
//! which only makes the sender more conservative (it may resend data the peer has),
//! never wrong. Blocks outside `[SND.UNA, SND.MAX]` are ignored (so are D-SACK
//! blocks, RFC 2883, which report data below SND.UNA).

use crate::wire::SeqNumber;

/// The most ranges the scoreboard keeps.
pub(super) const MAX_RANGES: usize = 64;

/// RFC 6675 DupThresh.
pub(super) const DUP_THRESH: usize = 3;

/// SACKed ranges `[start, end)` above SND.UNA: sorted, disjoint, not adjacent.
#[derive(Debug, Clone, Default)]
pub(super) struct Scoreboard {
    ranges: Vec<(SeqNumber, SeqNumber)>,
}

impl Scoreboard {
    /// Records a SACK block `[left, right)` if it lies within `[snd_una, snd_max]`
    /// and is not empty. Returns whether it was taken.
    pub(super) fn add(
        &mut self,
        left: SeqNumber,
        right: SeqNumber,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) -> bool {
        if !(snd_una.le(left) && left.lt(right) && right.le(snd_max)) {
            return false;
        }
        // The ranges it touches merge with it.
        let first = self.ranges.partition_point(|&(_, end)| end.lt(left));
        let mut last = first;
        let (mut start, mut end) = (left, right);
        while last < self.ranges.len() && self.ranges[last].0.le(end) {
            start = start.min(self.ranges[last].0);
            end = end.max(self.ranges[last].1);
            last += 1;
        }
        self.ranges.splice(first..last, [(start, end)]);
        self.ranges.truncate(MAX_RANGES);
        true
    }

    /// Forgets everything below `ack` (the new SND.UNA).
    pub(super) fn ack_to(&mut self, ack: SeqNumber) {
        let gone = self.ranges.partition_point(|&(_, end)| end.le(ack));
        self.ranges.drain(..gone);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(ack);
        }
    }

    /// Forgets everything (after a retransmission timeout: RFC 2018 lets the
    /// receiver renege, so old SACK information is not trusted then).
    pub(super) fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Whether nothing is SACKed.
    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, lowest first.
    #[cfg(test)]
    pub(super) fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }

    /// The end of the SACKed range containing `seq`, if `seq` is SACKed.
    pub(super) fn sacked_until(&self, seq: SeqNumber) -> Option<SeqNumber> {
        let at = self.ranges.partition_point(|&(_, end)| end.le(seq));
        self.ranges
            .get(at)
            .filter(|&&(start, _)| start.le(seq))
            .map(|&(_, end)| end)
    }

    /// The start of the first SACKed range after `seq`, if any.
    pub(super) fn next_sacked(&self, seq: SeqNumber) -> Option<SeqNumber> {
        let at = self.ranges.partition_point(|&(start, _)| start.le(seq));
        self.ranges.get(at).map(|&(start, _)| start)
    }

    /// SACKed bytes in `[from, to)`.
    pub(super) fn sacked_between(&self, from: SeqNumber, to: SeqNumber) -> usize {
        self.ranges
            .iter()
            .map(|&(start, end)| (end.min(to) - start.max(from)).max(0) as usize)
            .sum()
    }

    /// Where RFC 6675's IsLost stops being true: every unSACKed byte below the
    /// returned sequence number has DupThresh discontiguous SACKed ranges, or more
    /// than (DupThresh - 1) * MSS SACKed bytes, above it. `floor` (SND.UNA) when no
    /// byte is lost.
    pub(super) fn lost_end(&self, mss: usize, floor: SeqNumber) -> SeqNumber {
        let mut bytes = 0usize;
        for (count, &(start, end)) in self.ranges.iter().rev().enumerate() {
            bytes += (end - start).max(0) as usize;
            if count + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return start.max(floor);
            }
        }
        floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n.wrapping_add(u32::MAX - 500))
    }

    #[test]
    fn blocks_merge_and_are_bounded_by_the_window() {
        let mut board = Scoreboard::default();
        let (una, max) = (s(0), s(10_000));
        assert!(board.add(s(3000), s(4000), una, max));
        assert!(board.add(s(5000), s(6000), una, max));
        assert!(board.add(s(1000), s(2000), una, max));
        // Outside [SND.UNA, SND.MAX], empty, or reversed: ignored.
        assert!(!board.add(s(9000), s(10_001), una, max));
        assert!(!board.add(una - 100, s(10), una, max));
        assert!(!board.add(s(7000), s(7000), una, max));
        assert!(!board.add(s(8000), s(7000), una, max));
        assert_eq!(board.ranges().len(), 3);
        // Adjacent and overlapping blocks merge.
        assert!(board.add(s(4000), s(5000), una, max));
        assert_eq!(board.ranges(), [(s(1000), s(2000)), (s(3000), s(6000))]);
        assert!(board.add(s(1500), s(3500), una, max));
        assert_eq!(board.ranges(), [(s(1000), s(6000))]);
        assert_eq!(board.sacked_until(s(1000)), Some(s(6000)));
        assert_eq!(board.sacked_until(s(6000)), None);
        assert_eq!(board.next_sacked(s(0)), Some(s(1000)));
        assert_eq!(board.next_sacked(s(1000)), None);
        assert_eq!(board.sacked_between(s(0), s(2000)), 1000);
        board.ack_to(s(1500));
        assert_eq!(board.ranges(), [(s(1500), s(6000))]);
        board.ack_to(s(6000));
        assert!(board.is_empty());
    }

    #[test]
    fn at_most_max_ranges_are_kept() {
        let mut board = Scoreboard::default();
        let (una, max) = (s(0), s(1_000_000));
        for i in (0..200u32).rev() {
            board.add(s(i * 100 + 10), s(i * 100 + 20), una, max);
        }
        assert_eq!(board.ranges().len(), MAX_RANGES);
        assert_eq!(board.ranges()[0], (s(10), s(20)));
    }

    #[test]
    fn is_lost_needs_three_ranges_or_more_than_two_mss_above() {
        let mut board = Scoreboard::default();
        let (una, max) = (s(0), s(100_000));
        assert_eq!(board.lost_end(1000, una), una);
        board.add(s(5000), s(7000), una, max);
        assert_eq!(board.lost_end(1000, una), una);
        board.add(s(7000), s(7001), una, max);
        // 2001 bytes above: everything unSACKed below 5000 is lost.
        assert_eq!(board.lost_end(1000, una), s(5000));
        let mut board = Scoreboard::default();
        for start in [1000, 3000, 5000] {
            board.add(s(start), s(start + 10), una, max);
        }
        assert_eq!(board.lost_end(1000, una), s(1000));
    }
}
