//! Resets for segments that belong to no connection.

use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// The RST that answers `seg` when it matches no connection, or arrives at a
/// connection in CLOSED (RFC 9293 §3.10.7.1); `None` if `seg` is itself an RST
/// (resets are never answered).
///
/// * If `seg` has ACK: `<SEQ=SEG.ACK><CTL=RST>`;
/// * otherwise: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, where SEG.LEN counts the
///   payload (`seg.payload`), SYN and FIN.
///
/// The ports are swapped; the stack swaps the addresses.
///
/// ```
/// use demi_net_stack::tcp::rst_for;
/// use demi_net_stack::wire::{SeqNumber, TcpFlags, TcpRepr};
///
/// let syn = TcpRepr {
///     src_port: 49152,
///     dst_port: 81,
///     seq_number: SeqNumber(100),
///     flags: TcpFlags::SYN,
///     ..TcpRepr::default()
/// };
/// let rst = rst_for(&syn).unwrap();
/// assert_eq!((rst.src_port, rst.dst_port), (81, 49152));
/// assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
/// assert_eq!((rst.seq_number, rst.ack_number), (SeqNumber(0), Some(SeqNumber(101))));
/// ```
pub fn rst_for(seg: &TcpRepr<'_>) -> Option<TcpRepr<'static>> {
    if seg.flags.contains(TcpFlags::RST) {
        return None;
    }
    let reply = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        ..TcpRepr::default()
    };
    Some(match seg.ack_number {
        Some(ack) => TcpRepr {
            seq_number: ack,
            flags: TcpFlags::RST,
            ..reply
        },
        None => TcpRepr {
            seq_number: SeqNumber(0),
            ack_number: Some(seg.seq_number + seg.segment_len()),
            flags: TcpFlags::RST | TcpFlags::ACK,
            ..reply
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(flags: TcpFlags, ack: Option<u32>, payload: &[u8]) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq_number: SeqNumber(u32::MAX),
            ack_number: ack.map(SeqNumber),
            flags,
            window_len: 1000,
            payload,
            ..TcpRepr::default()
        }
    }

    #[test]
    fn with_ack_the_reset_takes_its_sequence_number_from_it() {
        let rst = rst_for(&segment(TcpFlags::ACK | TcpFlags::PSH, Some(77), b"data")).unwrap();
        assert_eq!(
            rst,
            TcpRepr {
                src_port: 80,
                dst_port: 1234,
                seq_number: SeqNumber(77),
                flags: TcpFlags::RST,
                ..TcpRepr::default()
            }
        );
    }

    #[test]
    fn without_ack_the_reset_acknowledges_the_segment() {
        let rst = rst_for(&segment(TcpFlags::SYN | TcpFlags::FIN, None, b"abc")).unwrap();
        assert_eq!(rst.seq_number, SeqNumber(0));
        // SYN + 3 bytes + FIN, across the wrap.
        assert_eq!(rst.ack_number, Some(SeqNumber(4)));
        assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
        assert_eq!(rst.window_len, 0);
    }

    #[test]
    fn resets_are_not_answered() {
        assert_eq!(rst_for(&segment(TcpFlags::RST, None, b"")), None);
        assert_eq!(
            rst_for(&segment(TcpFlags::RST | TcpFlags::ACK, Some(1), b"")),
            None
        );
    }
}
