//! The internet checksum.
//!
//! Implements:
//! * RFC 1071, *Computing the Internet Checksum*: the 16-bit ones'-complement sum of
//!   big-endian 16-bit words, with an odd final byte padded by a zero byte;
//! * the IPv4 pseudo-header that UDP (RFC 768) and TCP (RFC 9293 §3.1) add to it.
//!
//! Sums are carried around as *partial sums*: a `u32` whose [`fold`] is the 16-bit
//! ones'-complement sum. Partial sums of pieces combine with [`combine`], which is how
//! a pseudo-header and a segment are summed without copying them together. The
//! checksum field holds the complement of the folded sum, and a buffer that includes
//! a correct checksum sums to `0xffff`:
//!
//! ```
//! use demi_net_stack::wire::checksum;
//!
//! let mut data = [0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00];
//! let value = checksum::checksum(&data);
//! data[6..8].copy_from_slice(&value.to_be_bytes());
//! assert_eq!(checksum::fold(checksum::sum(&data)), 0xffff);
//! ```
//!
//! The long summing loop reads 32 bytes per step as four native-order `u64` words into
//! four `u128` accumulators (the short one, `u64` words into a `u64` with end-around
//! carry). That is exact because 2^32 ≡ 2^64 ≡ 1 modulo 0xffff, so a sum over wider
//! words folds down to the same 16-bit ones'-complement sum as one over 16-bit words. On a CPU with AVX2, long
//! buffers are summed by `demi-checksum-simd` instead (`u32` words widened into eight
//! 64-bit lanes, 256 bits at a time: about 1.6× the speed of the `u128` loop on a
//! 1460-byte segment); that crate holds the one `unsafe` call it takes.

use std::net::Ipv4Addr;

use super::ipv4::IpProtocol;

/// Adds `word` to `acc` with end-around carry (ones'-complement addition in 64 bits).
#[inline]
pub(crate) fn add_carry(acc: u64, word: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(word);
    // If the addition wrapped, `sum` is at most 2^64 - 2, so adding 1 cannot wrap.
    sum + u64::from(carry)
}

/// Folds a 64-bit ones'-complement accumulator down to at most 16 bits.
///
/// Big-endian 32-bit words may be added into such an accumulator as whole `u32`s
/// (up to 2^32 of them without overflow): the sum of a word's two 16-bit halves and
/// the word itself are the same modulo 0xffff, which is all the ones'-complement sum
/// keeps.
#[inline]
pub(crate) fn fold64(acc: u64) -> u32 {
    let acc = (acc >> 32) + (acc & 0xffff_ffff); // < 2^33
    let acc = (acc >> 32) + (acc & 0xffff_ffff); // < 2^32
    u32::from(fold(acc as u32))
}

/// The partial ones'-complement sum of `data` (RFC 1071).
///
/// `data` is read as big-endian 16-bit words; an odd final byte counts as the high
/// byte of a last word. The result is at most `0xffff`, so up to 65 537 partial sums
/// can be added as plain `u32`s before a [`fold`]; [`combine`] has no such limit. The
/// sum of an empty or all-zero buffer is 0; any other buffer sums to 1..=0xffff.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Ones'-complement sums are byte-order independent (RFC 1071 §2(B)): both loops
    // sum native-order words, whose sum is the byte swap of the big-endian one.
    let folded = if data.len() < LONG { sum_short(data) } else { sum_long(data) };
    u32::from(u16::from_be(folded))
}

/// Appends `data` to `out` and returns its partial sum, as [`sum`] would: in the
/// same pass as the copy on a CPU with AVX2 (`demi-checksum-simd`), with a copy and
/// then [`sum`] otherwise and for short data.
pub fn extend_and_sum(out: &mut bytes::BytesMut, data: &[u8]) -> u32 {
    if data.len() >= LONG {
        if let Some(words) = demi_checksum_simd::extend_and_sum(out, data) {
            return u32::from(u16::from_be(fold64(words) as u16));
        }
    } else {
        out.extend_from_slice(data);
    }
    sum(data)
}

/// From this length on, [`sum_long`]'s unrolled loop pays for its set-up.
const LONG: usize = 128;

/// Native-order 64-bit words into a ones'-complement accumulator: half the steps
/// of summing 32-bit words, and small enough to inline into every header and
/// short-segment checksum.
#[inline]
fn sum_short(data: &[u8]) -> u16 {
    fold64(add_short(0, data)) as u16
}

/// `acc`, a native-order ones'-complement accumulator (as [`add_short`] keeps),
/// with `data` added, whatever its length: short buffers through [`add_short`],
/// long ones through the unrolled (or AVX2) loop of [`sum`]. `data` must start at
/// an even offset of the summed bytes.
#[inline]
pub(crate) fn add(acc: u64, data: &[u8]) -> u64 {
    if data.len() < LONG {
        add_short(acc, data)
    } else {
        add_carry(acc, u64::from(sum_long(data)))
    }
}

/// `acc`, a native-order ones'-complement accumulator, with the native-order
/// 64-bit words of `data` added: the loop behind [`sum`] for short buffers, for
/// callers that sum pieces which are not adjacent, or share a piece between two
/// sums. [`fold64`] of the result is the byte swap of the big-endian 16-bit sum
/// (the same value when that is `0xffff`, as a verified checksum's is). `data` must
/// start at an even offset of the summed bytes, as each piece of [`sum`]'s does.
///
/// The last 0 to 7 bytes are added as a 32-bit, a 16-bit and an 8-bit piece
/// (each at an even offset, so each lands on whole 16-bit words of the sum) rather
/// than copied into a zeroed word: a copy of variable length is a call to `memcpy`.
#[inline]
pub(crate) fn add_short(acc: u64, data: &[u8]) -> u64 {
    // Two words per step into a 128-bit accumulator (an add and an add-with-carry
    // each), folded once at the end.
    let mut wide = u128::from(acc);
    let mut rest = data;
    while let Some((w, tail)) = rest.split_first_chunk::<32>() {
        for i in 0..4 {
            wide += u128::from(u64::from_ne_bytes(w[8 * i..8 * i + 8].try_into().expect("8 bytes")));
        }
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<16>() {
        let (a, b) = w.split_at(8);
        wide += u128::from(u64::from_ne_bytes(a.try_into().expect("8 bytes")));
        wide += u128::from(u64::from_ne_bytes(b.try_into().expect("8 bytes")));
        rest = tail;
    }
    let mut acc = add_carry(wide as u64, (wide >> 64) as u64);
    if let Some((w, tail)) = rest.split_first_chunk::<8>() {
        acc = add_carry(acc, u64::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        acc = add_carry(acc, u64::from(u32::from_ne_bytes(*w)));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        acc = add_carry(acc, u64::from(u16::from_ne_bytes(*w)));
        rest = tail;
    }
    if let [b] = rest {
        // The first byte of a 16-bit word whose second byte is zero.
        acc = add_carry(acc, u64::from(u16::from_ne_bytes([*b, 0])));
    }
    acc
}

/// Native-order 64-bit words into four 128-bit accumulators, 32 bytes per step:
/// each addition is an add and an add-with-carry, with four chains in flight, and no
/// shuffles to widen words (the 32-bit-word loop this replaced was bound by them; it
/// took about 25% longer on 1448-byte segments in L1).
#[inline(never)]
fn sum_long(data: &[u8]) -> u16 {
    if let Some(words) = demi_checksum_simd::sum_u32_words(data) {
        return fold64(words) as u16;
    }
    sum_long_scalar(data)
}

/// [`sum_long`] without vector units.
fn sum_long_scalar(data: &[u8]) -> u16 {
    #[inline]
    fn word(b: &[u8], i: usize) -> u128 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[8 * i..8 * i + 8]);
        u128::from(u64::from_ne_bytes(w))
    }
    let mut lanes = [0u128; 4];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane += word(b, i);
        }
    }
    let rem = blocks.remainder();
    let mut tail = [0u8; 32];
    tail[..rem.len()].copy_from_slice(rem);
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane += word(&tail, i);
    }
    // Each lane stays below 2^64 * (len / 32 + 1): the four add up without overflow
    // for any slice. 2^64 ≡ 1 (mod 0xffff), so the halves add with end-around carry.
    let total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    let folded = add_carry(total as u64, add_carry((total >> 64) as u64, 0));
    fold64(folded) as u16
}

/// Folds the carries of a partial sum into 16 bits: the ones'-complement sum.
///
/// This is the sum itself, not the checksum field value; that is `!fold(..)`.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum >> 16) + (sum & 0xffff); // <= 0x1fffe
    let sum = (sum >> 16) + (sum & 0xffff); // <= 0xffff
    sum as u16
}

/// Adds two partial sums (ones'-complement addition); the result is at most `0xffff`.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    u32::from(fold(u32::from(fold(a)) + u32::from(fold(b))))
}

/// The checksum field value for `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The partial sum of the IPv4 pseudo-header: source and destination address, a zero
/// byte, the protocol number and the upper-layer length.
///
/// `length` is the UDP length field or the TCP segment length (header and data). On
/// the wire it is 16 bits; IPv4 never carries more, and a larger value is summed as is
/// rather than truncated, so no input can panic here.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: usize) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let mut acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(u8::from(protocol));
    acc = add_carry(acc, length as u64);
    fold64(acc)
}

/// Whether a verification that came out `ok` counts as passed: under `--cfg fuzzing`
/// every verification passes.
#[inline]
pub(crate) fn verified(ok: bool) -> bool {
    cfg!(fuzzing) || ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious RFC 1071 loop, one 16-bit word at a time with a `u32` accumulator.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).map_or(0, |&b| u32::from(b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
            i += 2;
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 §3: the sum is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_vector() {
        // A well-known IPv4 header with its checksum 0xb861 zeroed.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&header)), 0xffff);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0; 33]), 0);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0xff; 64])), 0xffff);
        assert_eq!(fold(sum(&[0xff, 0xff])), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(combine(0xffff, 0xffff), 0xffff);
        assert_eq!(combine(0, 0), 0);
    }

    #[test]
    fn short_buffers_of_every_length_match_the_reference() {
        let data: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        for len in 0..LONG {
            for start in [0, 1, 3] {
                let d = &data[start..start + len];
                assert_eq!(fold(sum(d)), reference(d), "len {len} at {start}");
            }
        }
    }

    #[test]
    fn add_takes_any_length_after_a_starting_word() {
        // The fast receive path: the addresses, then a whole segment, short or long.
        let data: Vec<u8> = (0..2100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        let start = u64::from_ne_bytes(data[..8].try_into().unwrap());
        for len in (8..300).chain([LONG + 7, LONG + 8, 1460, 1487, 1488, 2100]) {
            let acc = add(start, &data[8..len]);
            assert_eq!(u16::from_be(fold64(acc) as u16), reference(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn short_buffers_summed_in_pieces_match_the_reference() {
        // A starting word (as the fast receive path's addresses), then two pieces
        // split at an even offset.
        let data: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        let start = u64::from_ne_bytes(data[..8].try_into().unwrap());
        for len in 8..LONG {
            for split in (8..=len).step_by(2) {
                let acc = add_short(add_short(start, &data[8..split]), &data[split..len]);
                assert_eq!(u16::from_be(fold64(acc) as u16), reference(&data[..len]), "len {len} split at {split}");
            }
        }
        assert_eq!(fold64(add_short(u64::MAX, &[0xff; 40])), 0xffff);
    }

    #[test]
    fn long_buffers_of_every_tail_length_match_the_reference() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (1400..1500).chain([65_535, 65_536, 70_000]) {
            for start in [0, 1, 3] {
                let d = &data[start..start + len.min(data.len() - start)];
                assert_eq!(fold(sum(d)), reference(d), "len {len} at {start}");
                // The scalar loop, which `sum` skips on a CPU with AVX2.
                let scalar = u32::from(u16::from_be(sum_long_scalar(d)));
                assert_eq!(fold(scalar), reference(d), "scalar: len {len} at {start}");
            }
        }
        assert_eq!(fold(sum(&[0xff; 4096])), 0xffff);
    }

    #[test]
    fn extend_and_sum_matches_sum_and_appends() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for len in [0, 1, 63, 127, 128, 129, 1460, 1461, 1999] {
            let mut out = bytes::BytesMut::from(&[7u8, 7][..]);
            let s = extend_and_sum(&mut out, &data[1..1 + len]);
            assert_eq!(&out[2..], &data[1..1 + len], "len {len}");
            assert_eq!(fold(s), reference(&data[1..1 + len]), "len {len}");
        }
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(198, 18, 0, 2);
        let bytes = [198, 18, 0, 1, 198, 18, 0, 2, 0, 6, 0x01, 0x2c];
        assert_eq!(
            fold(pseudo_header(src, dst, IpProtocol::Tcp, 300)),
            fold(sum(&bytes))
        );
        // Oversized lengths are summed, not truncated, and do not panic.
        let _ = pseudo_header(src, dst, IpProtocol::Udp, usize::MAX);
    }

    proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            prop_assert_eq!(fold(sum(&data)), reference(&data));
        }

        #[test]
        fn splitting_at_even_offsets_combines(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..300,
        ) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(combine(sum(a), sum(b))), fold(sum(&data)));
        }

        #[test]
        fn embedding_the_checksum_verifies(mut data in proptest::collection::vec(any::<u8>(), 2..300)) {
            data[0] = 0;
            data[1] = 0;
            let value = checksum(&data);
            data[..2].copy_from_slice(&value.to_be_bytes());
            prop_assert_eq!(fold(sum(&data)), 0xffff);
        }
    }
}
