//! Header prediction (`Connection::predicted` / `on_predicted`): the segments it
//! takes leave the connection exactly as the general path of RFC 9293 §3.10.7.4
//! would, and the segments it must not take (out of order, hole fills, FIN, RST,
//! SYN, duplicate ACKs, PAWS failures, SACK blocks, data past the window, ACKs of
//! unsent data) go the general way.
//!
//! Three connections are driven through the same script from the same instant, one
//! with `handle_segment`, one with `handle_segment_general`, and one with
//! `handle_head` (the stack's one-pass receive path) whenever the segment has no
//! option but timestamps; after every step their whole state (`Debug`), the
//! segments they send, their events and their deadlines must be the same.

use super::*;
use crate::tcp::SegmentHead;

/// Three identical connections, established at `t0 + 10 ms` (the peer's SYN-ACK
/// carries MSS 1460, window 65,535, and the options the configuration asks for).
fn triple(config: &TcpConfig) -> (Connection, Connection, Connection, Instant) {
    let t0 = Instant::now();
    let now = t0 + ms(10);
    let make = || {
        let mut c = Connection::connect(config, local(), remote(), SeqNumber(LOCAL_ISS), t0);
        let syn = c.poll_transmit(t0).expect("SYN");
        let synack = TcpRepr {
            max_seg_size: Some(1460),
            sack_permitted: config.sack,
            timestamp: syn.repr.timestamp.map(|(tsval, _)| (700, tsval)),
            ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
        };
        c.handle_segment(now, &synack, Bytes::new());
        while c.poll_transmit(now).is_some() {}
        while c.poll_event().is_some() {}
        assert_eq!(c.state(), State::Established);
        c
    };
    (make(), make(), make(), now)
}

/// Everything observable about a connection after a step: its state, the segments
/// it sends, its events, its deadline.
type Observed = (String, Vec<(TcpRepr<'static>, Bytes)>, Vec<TcpEvent>, Option<Instant>);

fn observe(c: &mut Connection, now: Instant) -> Observed {
    let segments = std::iter::from_fn(|| c.poll_transmit(now))
        .map(|s| (s.repr, s.payload.to_bytes()))
        .collect();
    let events = std::iter::from_fn(|| c.poll_event()).collect();
    (format!("{c:?}"), segments, events, c.poll_at())
}

struct Twins {
    fast: Connection,
    general: Connection,
    /// Fed through `handle_head` when the segment allows it.
    head: Connection,
    now: Instant,
}

impl Twins {
    fn new(config: &TcpConfig) -> Twins {
        let (fast, general, head, now) = triple(config);
        Twins { fast, general, head, now }
    }

    /// Feeds `seg` with `payload` to both, checks which path the fast one takes,
    /// and that both end up the same.
    #[track_caller]
    fn feed(&mut self, seg: TcpRepr<'_>, payload: &[u8], predicted: bool) {
        assert_eq!(
            self.fast.predicted(&seg, payload.len()),
            predicted,
            "prediction for {seg:?} with {} bytes",
            payload.len()
        );
        let payload = Bytes::copy_from_slice(payload);
        self.fast.handle_segment(self.now, &seg, payload.clone());
        self.general.handle_segment_general(self.now, &seg, payload.clone());
        let only_timestamps = seg.sack_ranges == [None; 3]
            && seg.max_seg_size.is_none()
            && seg.window_scale.is_none()
            && !seg.sack_permitted;
        if only_timestamps {
            self.head.handle_head(self.head.ticks(self.now), &SegmentHead::of(&seg), payload);
        } else {
            self.head.handle_segment(self.now, &seg, payload);
        }
        self.same();
    }

    #[track_caller]
    fn same(&mut self) {
        let a = observe(&mut self.fast, self.now);
        let b = observe(&mut self.general, self.now);
        let c = observe(&mut self.head, self.now);
        assert_eq!(a, b);
        assert_eq!(a, c, "handle_head");
    }

    /// The application sends `data` on both; returns the segments that go out.
    #[track_caller]
    fn write(&mut self, data: &[u8]) -> Vec<(TcpRepr<'static>, Bytes)> {
        assert_eq!(self.fast.send(Bytes::copy_from_slice(data)), Ok(data.len()));
        assert_eq!(self.general.send(Bytes::copy_from_slice(data)), Ok(data.len()));
        assert_eq!(self.head.send(Bytes::copy_from_slice(data)), Ok(data.len()));
        let a = observe(&mut self.fast, self.now);
        let b = observe(&mut self.general, self.now);
        let c = observe(&mut self.head, self.now);
        assert_eq!(a, b);
        assert_eq!(a, c, "handle_head");
        a.1
    }

    /// The application reads everything on both.
    #[track_caller]
    fn read(&mut self) -> usize {
        let mut n = 0;
        while let Ok(chunk) = self.fast.recv(usize::MAX) {
            assert_eq!(self.general.recv(usize::MAX), Ok(chunk.clone()));
            assert_eq!(self.head.recv(usize::MAX), Ok(chunk.clone()));
            n += chunk.len();
        }
        assert!(self.general.recv(usize::MAX).is_err());
        assert!(self.head.recv(usize::MAX).is_err());
        self.same();
        n
    }

    /// Does `f` to all three connections.
    fn each(&mut self, f: impl Fn(&mut Connection)) {
        f(&mut self.fast);
        f(&mut self.general);
        f(&mut self.head);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }
}

fn data_seg(seq: u32, ack: u32) -> TcpRepr<'static> {
    with(peer(seq, Some(ack)), TcpFlags::PSH)
}

#[test]
fn in_order_data_and_acks_are_predicted_and_match_the_general_path() {
    let mut t = Twins::new(&config());
    let mut peer_seq = REMOTE_ISS + 1;
    let mut our_seq = LOCAL_ISS + 1;
    for round in 0..5u32 {
        // The peer's data, in order.
        let data = pattern(round as usize * 100, 100);
        t.feed(data_seg(peer_seq, our_seq), &data, true);
        peer_seq += 100;
        t.advance(ms(1));
        // Our answer, and the peer's ACK of it (new data acknowledged: predicted).
        let out = t.write(&pattern(0, 300));
        assert!(!out.is_empty());
        our_seq += 300;
        t.advance(ms(2));
        t.feed(peer(peer_seq, Some(our_seq)), b"", true);
        assert_eq!(t.read(), 100);
    }
    // Data that also acknowledges ours, with a changed window.
    t.write(b"more");
    our_seq += 4;
    let seg = TcpRepr { window_len: 30_000, ..data_seg(peer_seq, our_seq) };
    t.feed(seg, b"both ways", true);
    peer_seq += 9;
    // A window update alone (nothing new acknowledged): the general path, which
    // decides whether it is a duplicate ACK.
    t.feed(TcpRepr { window_len: 40_000, ..peer(peer_seq, Some(our_seq)) }, b"", false);
    assert_eq!(t.read(), 9);
}

#[test]
fn unusual_segments_take_the_general_path() {
    let mut t = Twins::new(&config());
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    // Out of order, then the hole fill (out-of-order data is held), then in order.
    t.feed(data_seg(p + 10, o), &pattern(10, 10), false);
    t.feed(data_seg(p, o), &pattern(0, 10), false);
    t.feed(data_seg(p + 20, o), &pattern(20, 5), true);
    assert_eq!(t.read(), 25);
    let p = p + 25;
    // Old data (a retransmission), an ACK of unsent data, a flag other than ACK
    // and PSH, data past the window (trimmed to it).
    t.feed(data_seg(p - 5, o), &pattern(20, 5), false);
    t.feed(peer(p, Some(o + 10)), b"", false);
    t.feed(with(data_seg(p, o), TcpFlags::URG), b"u", false);
    let p = p + 1;
    t.feed(data_seg(p, o), &[7; 65_536], false);
    assert_eq!(t.read(), 65_535, "the URG byte and what fitted after it");
    // An RST off RCV.NXT draws a challenge ACK.
    t.feed(with(peer(p, Some(o)), TcpFlags::RST), b"", false);
    assert_eq!(t.fast.state(), State::Established);
}

#[test]
fn rst_syn_and_fin_take_the_general_path() {
    let mut t = Twins::new(&config());
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    t.feed(with(peer(p, Some(o)), TcpFlags::SYN), b"", false);
    t.feed(with(data_seg(p, o), TcpFlags::FIN), b"bye", false);
    assert_eq!(t.fast.state(), State::CloseWait);
    assert_eq!(t.read(), 3);
    // After the FIN nothing is predicted (the state is not ESTABLISHED anyway).
    t.feed(peer(p + 4, Some(o)), b"", false);
    let mut t = Twins::new(&config());
    t.feed(with(peer(p, Some(o)), TcpFlags::RST), b"", false);
    assert_eq!(t.fast.state(), State::Closed);
}

#[test]
fn duplicate_acks_and_recovery_take_the_general_path() {
    let mut t = Twins::new(&config());
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    t.write(&pattern(0, 5 * 1460));
    // The first segment is lost: three duplicate ACKs start fast recovery.
    for _ in 0..3 {
        t.feed(peer(p, Some(o)), b"", false);
    }
    assert!(t.fast.in_recovery);
    // A partial ACK in recovery, then the full one.
    t.feed(peer(p, Some(o + 1460)), b"", false);
    t.feed(peer(p, Some(o + 5 * 1460)), b"", false);
    // Recovery over: prediction again.
    t.write(b"x");
    t.feed(peer(p, Some(o + 5 * 1460 + 1)), b"", true);
}

#[test]
fn timestamps_and_paws() {
    let config = TcpConfig { timestamps: true, ..config() };
    let mut t = Twins::new(&config);
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    let ts = |seg: TcpRepr<'static>, tsval: u32| TcpRepr { timestamp: Some((tsval, 0)), ..seg };
    t.feed(ts(data_seg(p, o), 701), b"abc", true);
    // An older TSval fails PAWS; a missing option is dropped: the general path.
    t.feed(ts(data_seg(p + 3, o), 600), b"def", false);
    t.feed(data_seg(p + 3, o), b"def", false);
    t.advance(ms(5));
    t.feed(ts(data_seg(p + 3, o), 701), b"def", true);
    t.write(b"timed");
    t.advance(ms(3));
    let echo = t.fast.ts.clock(t.fast.ticks(t.now));
    t.feed(TcpRepr { timestamp: Some((705, echo)), ..peer(p + 6, Some(o + 5)) }, b"", true);
    assert_eq!(t.read(), 6);
}

#[test]
fn sack_blocks_take_the_general_path() {
    let config = TcpConfig { sack: true, ..config() };
    let mut t = Twins::new(&config);
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    t.write(&pattern(0, 3 * 1460));
    let sack = TcpRepr { sack_ranges: [Some((o + 1460, o + 2920)), None, None], ..peer(p, Some(o)) };
    t.feed(sack, b"", false);
    // The scoreboard holds a block: even a plain new ACK goes the general way.
    t.feed(peer(p, Some(o + 100)), b"", false);
    t.feed(peer(p, Some(o + 3 * 1460)), b"", false);
    t.write(b"y");
    t.feed(peer(p, Some(o + 3 * 1460 + 1)), b"", true);
}

/// `recv_all` leaves the connection as `recv` called until it fails does: the same
/// bytes, the same window update, the same errors.
#[test]
fn recv_all_is_recv_until_it_fails() {
    let config = TcpConfig { recv_buffer: 8 * 1460, ..config() };
    let mut t = Twins::new(&config);
    let (mut p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    for round in 0..4 {
        // Fill most of the window, then read it all: the window update is due.
        for i in 0..(2 + 2 * round) {
            t.feed(data_seg(p, o), &pattern(i * 1000, 1000), true);
            p += 1000;
        }
        let mut all = Vec::new();
        let n = t.fast.recv_all(|d| all.extend_from_slice(&d)).expect("data");
        let mut one_by_one = Vec::new();
        while let Ok(d) = t.general.recv(usize::MAX) {
            one_by_one.extend_from_slice(&d);
        }
        assert_eq!((n, &all), (one_by_one.len(), &one_by_one));
        while t.head.recv(usize::MAX).is_ok() {}
        t.same();
        assert_eq!(t.fast.recv_all(|_| panic!("nothing left")), Err(TcpError::WouldBlock));
    }
    t.feed(with(peer(p, Some(o)), TcpFlags::FIN), b"", false);
    assert_eq!(t.fast.recv_all(|_| {}), Err(TcpError::Finished));
    assert_eq!(t.general.recv(usize::MAX), Err(TcpError::Finished));
    assert_eq!(t.head.recv(usize::MAX), Err(TcpError::Finished));
    t.same();
}

/// The predicted ACK steps do what the general ones do in their less common
/// turns: a partial ACK restarts the retransmission timer, an ACK that frees room
/// in a full send buffer reports `Writable`, the echoed timestamp gives the RTT
/// sample once the timed segment is gone, and after a timeout an ACK beyond
/// SND.NXT moves SND.NXT up.
#[test]
fn predicted_acks_after_a_full_buffer_and_a_timeout() {
    let config = TcpConfig { send_buffer: 4 * 1460, timestamps: true, ..config() };
    let mut t = Twins::new(&config);
    let (p, o) = (REMOTE_ISS + 1, LOCAL_ISS + 1);
    let ts = |seg: TcpRepr<'static>, tsval: u32, tsecr: u32| TcpRepr { timestamp: Some((tsval, tsecr)), ..seg };
    // More than fits: the send is cut short, so `Writable` is owed.
    t.each(|c| assert_eq!(c.send(Bytes::from(pattern(0, 5 * 1460))), Ok(4 * 1460)));
    t.same();
    t.advance(ms(4));
    let echo = t.fast.ts.clock(t.fast.ticks(t.now));
    // A partial ACK: room frees up and the timer restarts for the rest.
    t.feed(ts(peer(p, Some(o + 1460)), 701, echo), b"", true);
    t.each(|c| assert_eq!(c.send(Bytes::from(pattern(0, 1460))), Ok(1460)));
    t.same();
    // The timer fires: back to SND.UNA, one segment resent.
    t.advance(Duration::from_secs(2));
    let now = t.now;
    t.each(|c| c.handle_timeout(now));
    t.same();
    // The peer had it all: an ACK past SND.NXT, with data, echoing the first
    // transmission (no sample from it: it is older than the retransmission).
    t.advance(ms(1));
    t.feed(ts(data_seg(p, o + 4 * 1460), 702, echo), b"late", true);
    // SND.NXT went up to the ACK, and the last segment went out from there.
    assert_eq!((t.fast.snd_una, t.fast.snd_nxt), (SeqNumber(o + 4 * 1460), SeqNumber(o + 5 * 1460)));
    // The rest, with an echo that is a round trip.
    t.advance(ms(3));
    let echo = t.fast.ts.clock(t.fast.ticks(t.now - ms(2)));
    t.feed(ts(peer(p + 4, Some(o + 5 * 1460)), 703, echo), b"", true);
    assert_eq!(t.read(), 4);
}
