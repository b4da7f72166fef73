//! Whatever a peer sends, in whatever state, the connection neither panics nor
//! loops, keeps its buffers bounded, and never sends more than the MSS at once.

use proptest::prelude::*;

use super::*;

/// One step of a random session.
#[derive(Debug, Clone)]
enum Step {
    /// A segment from the peer, its numbers as offsets from what we expect.
    Segment {
        seq_offset: i32,
        ack_offset: Option<i32>,
        flags: u8,
        window: u16,
        len: usize,
        mss: Option<u16>,
        window_scale: Option<u8>,
    },
    Advance(u64),
    Write(usize),
    Read(usize),
    Close,
    Abort,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => (
            prop_oneof![-70_000i32..70_000, -3i32..3],
            proptest::option::of(prop_oneof![-70_000i32..70_000, -3i32..3000]),
            any::<u8>(),
            any::<u16>(),
            0usize..3000,
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(seq_offset, ack_offset, flags, window, len, mss, window_scale)| {
                Step::Segment { seq_offset, ack_offset, flags, window, len, mss, window_scale }
            }),
        5 => (0u64..3_000).prop_map(Step::Advance),
        5 => (0usize..5000).prop_map(Step::Write),
        4 => (0usize..5000).prop_map(Step::Read),
        2 => Just(Step::Close),
        1 => Just(Step::Abort),
    ]
}

fn small_config() -> TcpConfig {
    TcpConfig {
        recv_buffer: 5000,
        send_buffer: 8000,
        window_scaling: true,
        ack_delay: Some(ms(10)),
        ..config()
    }
}

/// Runs `steps` against the connection of `h`.
fn run(mut h: Harness, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let payload = pattern(0, 3000);
    for step in steps {
        match step {
            Step::Segment {
                seq_offset,
                ack_offset,
                flags,
                window,
                len,
                mss,
                window_scale,
            } => {
                let rcv_nxt = h.conn.rcv_nxt;
                let snd_una = h.conn.snd_una;
                let seg = TcpRepr {
                    src_port: REMOTE_PORT,
                    dst_port: LOCAL_PORT,
                    seq_number: rcv_nxt + seq_offset as usize,
                    ack_number: ack_offset.map(|offset| snd_una + offset as usize),
                    window_len: window,
                    flags: TcpFlags::from_bits(flags),
                    max_seg_size: mss,
                    window_scale,
                    payload: &payload[..len],
                    ..TcpRepr::default()
                };
                h.send(seg);
            }
            Step::Advance(by) => h.advance(ms(by)),
            Step::Write(n) => {
                let _ = h.conn.send(Bytes::from(pattern(0, n)));
            }
            Step::Read(n) => {
                let _ = h.conn.recv(n);
            }
            Step::Close => h.conn.close(),
            Step::Abort => h.conn.abort(),
        }
        let mss = h.conn.send_mss();
        for _ in 0..1000 {
            let Some(segment) = h.recv() else { break };
            prop_assert!(segment.payload.len() <= mss);
        }
        prop_assert!(h.recv().is_none(), "poll_transmit does not run dry");
        let buffer = &h.conn.recv_buffer;
        prop_assert!(buffer.ready_len() + buffer.out_of_order_len() <= 5000);
        prop_assert!(h.conn.send_queue.len() <= 8000);
        h.events();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn established_survives_anything(steps in proptest::collection::vec(step(), 1..40)) {
        run(Harness::established(&small_config()), steps)?;
    }

    #[test]
    fn syn_sent_survives_anything(steps in proptest::collection::vec(step(), 1..20)) {
        let mut h = Harness::connect(&small_config());
        h.recv().expect("SYN");
        run(h, steps)?;
    }

    #[test]
    fn syn_received_survives_anything(steps in proptest::collection::vec(step(), 1..20)) {
        let syn = with(peer(REMOTE_ISS, None), TcpFlags::SYN);
        let mut h = Harness::accept(&small_config(), &syn);
        h.recv().expect("SYN-ACK");
        run(h, steps)?;
    }
}
