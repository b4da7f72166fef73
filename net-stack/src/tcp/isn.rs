//! Initial sequence numbers, per RFC 6528.
//!
//! ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a
//! clock ticking every 4 microseconds and F a keyed pseudo-random function. F is
//! SipHash-2-4 (Aumasson and Bernstein, 2012) over the 4-tuple, keyed with a 128-bit
//! secret the stack draws once at start-up. Different 4-tuples get unrelated
//! sequence spaces, so an off-path attacker cannot guess one connection's numbers
//! from another's, while the clock keeps successive incarnations of the same 4-tuple
//! moving forward.

use std::net::SocketAddrV4;
use std::time::Instant;

use crate::wire::SeqNumber;

/// One SipRound over the state.
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `message` under `key` (two rounds per message word, four at the
/// end).
pub(crate) fn siphash24(key: &[u8; 16], message: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes(key[..8].try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(key[8..].try_into().unwrap_or_default());
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = message.chunks_exact(8);
    for word in &mut words {
        let m = u64::from_le_bytes(word.try_into().unwrap_or_default());
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    // The last word: the remaining bytes, and the message length in the top byte.
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = message.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Generates initial sequence numbers as RFC 6528 describes.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddrV4};
/// use std::time::{Duration, Instant};
/// use demi_net_stack::tcp::IsnGenerator;
///
/// let epoch = Instant::now();
/// let isn = IsnGenerator::new([7; 16], epoch);
/// let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
/// let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
/// let first = isn.generate(local, remote, epoch);
/// // The clock moves the same 4-tuple's ISN forward by one every 4 µs.
/// let later = isn.generate(local, remote, epoch + Duration::from_micros(400));
/// assert_eq!(later - first, 100);
/// ```
#[derive(Clone)]
pub struct IsnGenerator {
    secret: [u8; 16],
    epoch: Instant,
}

impl core::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("IsnGenerator")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl IsnGenerator {
    /// A generator keyed with `secret` (draw it from a good random source once per
    /// stack), whose 4-µs clock counts from `epoch`.
    pub fn new(secret: [u8; 16], epoch: Instant) -> Self {
        IsnGenerator { secret, epoch }
    }

    /// The ISN for a connection from `local` to `remote` opened at `now`.
    pub fn generate(&self, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> SeqNumber {
        let mut tuple = [0u8; 12];
        tuple[..4].copy_from_slice(&local.ip().octets());
        tuple[4..6].copy_from_slice(&local.port().to_be_bytes());
        tuple[6..10].copy_from_slice(&remote.ip().octets());
        tuple[10..].copy_from_slice(&remote.port().to_be_bytes());
        let hash = siphash24(&self.secret, &tuple);
        let ticks = now.saturating_duration_since(self.epoch).as_micros() / 4;
        SeqNumber((hash as u32).wrapping_add(ticks as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    /// The test vector of the SipHash paper (appendix A): key 00..0f, message 00..0e.
    #[test]
    fn reference_vector() {
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(&key(), &message), 0xa129_ca61_49be_45e5);
    }

    /// The first entries of the reference implementation's vector table (messages
    /// 00, 00 01, ... under the same key), covering empty, partial and whole words.
    #[test]
    fn reference_table() {
        let expected: [(usize, u64); 4] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (7, 0xab02_00f5_8b01_d137),
            (8, 0x93f5_f579_9a93_2462),
        ];
        for (len, hash) in expected {
            let message: Vec<u8> = (0..len as u8).collect();
            assert_eq!(siphash24(&key(), &message), hash, "length {len}");
        }
    }

    #[test]
    fn tuples_get_unrelated_numbers_and_the_clock_advances_them() {
        let epoch = Instant::now();
        let isn = IsnGenerator::new([0x5a; 16], epoch);
        let a = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
        let b = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
        let c = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 81);
        assert_ne!(isn.generate(a, b, epoch), isn.generate(a, c, epoch));
        assert_ne!(isn.generate(a, b, epoch), isn.generate(b, a, epoch));
        let one_second = epoch + std::time::Duration::from_secs(1);
        assert_eq!(
            isn.generate(a, b, one_second) - isn.generate(a, b, epoch),
            250_000
        );
        let other_key = IsnGenerator::new([0xa5; 16], epoch);
        assert_ne!(isn.generate(a, b, epoch), other_key.generate(a, b, epoch));
        // Before the epoch the clock reads zero.
        let early = IsnGenerator::new([0x5a; 16], one_second);
        assert_eq!(early.generate(a, b, epoch), isn.generate(a, b, epoch));
        assert!(!format!("{isn:?}").contains("secret"));
    }
}
