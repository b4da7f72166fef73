//! TCP through the stack: resets for segments that match no connection
//! (RFC 9293 §3.10.7.1), listeners and their backlog, and one connection's life from
//! SYN to TIME-WAIT, each step checked on the exact segments that come out.

mod common;

use bytes::Bytes;
use common::*;
use demi_net_stack::iface::{Event, StackError};
use demi_net_stack::tcp::{State, TcpError, TcpEvent};
use demi_net_stack::wire::{SeqNumber, TcpFlags};

// ---- segments for no connection ---------------------------------------------------

#[test]
fn syn_to_a_closed_port_gets_rst_ack() {
    let (mut s, now) = stack();
    let rst = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 81, SeqNumber(7777)))));
    assert_eq!((rst.src_port, rst.dst_port), (81, 40_000));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, the SYN counting one.
    assert_eq!((rst.seq, rst.ack), (SeqNumber(0), Some(SeqNumber(7778))));
    assert!(rst.payload.is_empty() && rst.mss.is_none());
    assert_eq!(s.stats().tcp_no_socket, 1);
    assert_eq!(s.tcp_connection_count(), 0);
}

#[test]
fn rst_ack_acknowledges_data_and_fin_too() {
    let (mut s, now) = stack();
    let frame = seg_frame(40_000, 81, TcpFlags::SYN | TcpFlags::FIN, SeqNumber(100), None, b"12345");
    let rst = parse_tcp(&single(exchange(&mut s, now, frame)));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((rst.seq, rst.ack), (SeqNumber(0), Some(SeqNumber(100 + 5 + 2))));
    // A segment with neither SYN nor ACK.
    let frame = seg_frame(40_000, 81, TcpFlags::PSH, SeqNumber(u32::MAX - 1), None, b"abc");
    let rst = parse_tcp(&single(exchange(&mut s, now, frame)));
    assert_eq!((rst.seq, rst.ack), (SeqNumber(0), Some(SeqNumber(1))), "wraps around");
}

#[test]
fn a_segment_with_ack_to_no_connection_gets_rst_with_seq_from_its_ack() {
    let (mut s, now) = stack();
    let frame = seg_frame(40_000, 81, TcpFlags::ACK | TcpFlags::PSH, SeqNumber(5), Some(SeqNumber(0xdead_beef)), b"x");
    let rst = parse_tcp(&single(exchange(&mut s, now, frame)));
    assert_eq!(rst.flags, TcpFlags::RST);
    assert_eq!((rst.seq, rst.ack), (SeqNumber(0xdead_beef), None));
    assert_eq!((rst.src_port, rst.dst_port), (81, 40_000));
}

#[test]
fn rst_to_no_connection_is_not_answered() {
    let (mut s, now) = stack();
    for flags in [TcpFlags::RST, TcpFlags::RST | TcpFlags::ACK] {
        let ack = flags.contains(TcpFlags::ACK).then_some(SeqNumber(9));
        assert!(exchange(&mut s, now, seg_frame(40_000, 81, flags, SeqNumber(1), ack, b"")).is_empty());
    }
    assert_eq!(s.stats().tcp_no_socket, 2);
}

#[test]
fn a_listener_answers_non_syn_segments_with_rst() {
    let (mut s, now) = stack();
    s.tcp_listen(80, 4).unwrap();
    let ack = seg_frame(40_000, 80, TcpFlags::ACK, SeqNumber(1), Some(SeqNumber(4242)), b"");
    let rst = parse_tcp(&single(exchange(&mut s, now, ack)));
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, SeqNumber(4242)));
    let synack = seg_frame(40_000, 80, TcpFlags::SYN | TcpFlags::ACK, SeqNumber(1), Some(SeqNumber(77)), b"");
    let rst = parse_tcp(&single(exchange(&mut s, now, synack)));
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, SeqNumber(77)));
    assert!(exchange(&mut s, now, seg_frame(40_000, 80, TcpFlags::RST, SeqNumber(1), None, b"")).is_empty());
    assert_eq!(s.tcp_connection_count(), 0);
}

#[test]
fn segments_from_invalid_sources_or_ports_are_dropped() {
    let (mut s, now) = stack();
    s.tcp_listen(80, 4).unwrap();
    // Port 0 on either side.
    assert!(exchange(&mut s, now, syn_frame(0, 80, PEER_ISS)).is_empty());
    assert!(exchange(&mut s, now, syn_frame(40_000, 0, PEER_ISS)).is_empty());
    // An unspecified source address.
    let syn = demi_net_stack::wire::TcpRepr { seq_number: PEER_ISS, flags: TcpFlags::SYN, ..Default::default() };
    let frame = tcp_frame(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 1), ours(80), &syn);
    assert!(exchange(&mut s, now, frame).is_empty());
    assert_eq!(s.stats().rx_malformed, 3);
    assert_eq!(s.tcp_connection_count(), 0);
}

// ---- listeners ----------------------------------------------------------------------

#[test]
fn listen_syn_synack_ack_accept() {
    let (mut s, now) = stack();
    let l = s.tcp_listen(80, 4).unwrap();
    assert_eq!(s.tcp_listen_port(l), Ok(80));
    assert_eq!(s.tcp_listen(80, 4), Err(StackError::AddressInUse));
    assert!(s.tcp_port_in_use(80));

    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    assert_eq!((synack.src_port, synack.dst_port), (80, 40_000));
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.ack, Some(PEER_ISS + 1));
    assert_eq!(synack.mss, Some(1460));
    // 256 KiB receive buffer: shift 3, offered because the SYN offered scaling.
    assert_eq!(synack.window_scale, Some(3));
    assert_eq!(synack.window, 65_535, "a SYN's window is never scaled");
    assert!(synack.payload.is_empty());
    assert_eq!(s.tcp_connection_count(), 1);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.tcp_accept(l), Err(StackError::WouldBlock), "not before the handshake completes");

    let iss = synack.seq;
    let ack = seg_frame(40_000, 80, TcpFlags::ACK, PEER_ISS + 1, Some(iss + 1), b"");
    assert!(exchange(&mut s, now, ack).is_empty());
    assert_eq!(events(&mut s), vec![Event::AcceptReady(l)]);
    let (c, remote) = s.tcp_accept(l).unwrap();
    assert_eq!(remote, peer(40_000));
    let conn = s.tcp(c).unwrap();
    assert_eq!(conn.state(), State::Established);
    assert_eq!((conn.local(), conn.remote()), (ours(80), peer(40_000)));
    assert_eq!(conn.send_mss(), 1460);
    assert_eq!(s.tcp_accept(l), Err(StackError::WouldBlock));
}

#[test]
fn a_retransmitted_syn_is_answered_with_the_same_synack() {
    let (mut s, now) = stack();
    s.tcp_listen(80, 4).unwrap();
    let first = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    let again = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    assert_eq!((again.flags, again.seq, again.ack), (first.flags, first.seq, first.ack));
    assert_eq!(s.tcp_connection_count(), 1);
}

#[test]
fn synack_is_retransmitted_and_the_half_open_connection_given_up() {
    let (mut s, now) = stack();
    s.tcp_listen(80, 1).unwrap();
    let first = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    let mut t = now;
    let mut resent = 0;
    while let Some(at) = s.poll_at() {
        t = at;
        s.handle_timeout(t);
        for f in drain(&mut s, t) {
            let seg = parse_tcp(&f);
            if seg.flags.contains(TcpFlags::SYN) {
                assert_eq!((seg.seq, seg.ack), (first.seq, first.ack));
                resent += 1;
            } else {
                assert_eq!(seg.flags, TcpFlags::RST | TcpFlags::ACK, "gives up with a reset");
            }
        }
        assert!(resent < 100);
    }
    assert_eq!(resent, 6, "max_syn_retransmits");
    assert_eq!(s.tcp_connection_count(), 0, "the orphan is freed");
    assert!(events(&mut s).is_empty(), "nobody accepted it: no events");
    // The backlog slot is free again.
    let synack = parse_tcp(&single(exchange(&mut s, t, syn_frame(40_001, 80, PEER_ISS))));
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
}

#[test]
fn backlog_full_drops_syns_and_counts_them() {
    let (mut s, now) = stack();
    let l = s.tcp_listen(80, 1).unwrap();
    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    assert!(exchange(&mut s, now, syn_frame(40_001, 80, PEER_ISS)).is_empty(), "no room: dropped, no RST");
    assert_eq!(s.stats().tcp_syn_dropped, 1);
    assert_eq!(s.tcp_connection_count(), 1);

    // Established but not accepted still takes the slot.
    let ack = seg_frame(40_000, 80, TcpFlags::ACK, PEER_ISS + 1, Some(synack.seq + 1), b"");
    exchange(&mut s, now, ack);
    assert!(exchange(&mut s, now, syn_frame(40_002, 80, PEER_ISS)).is_empty());
    assert_eq!(s.stats().tcp_syn_dropped, 2);

    // Accepting frees it.
    s.tcp_accept(l).unwrap();
    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_003, 80, PEER_ISS))));
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
}

#[test]
fn the_connection_limit_drops_syns() {
    let (mut s, now) = stack_with(demi_net_stack::iface::StackConfig { max_connections: 1, ..config() });
    let l = s.tcp_listen(80, 8).unwrap();
    handshake(&mut s, now, l, 80, 40_000);
    assert!(exchange(&mut s, now, syn_frame(40_001, 80, PEER_ISS)).is_empty());
    assert_eq!(s.stats().tcp_syn_dropped, 1);
}

#[test]
fn unlisten_resets_connections_not_yet_accepted() {
    let (mut s, now) = stack();
    let l = s.tcp_listen(80, 4).unwrap();
    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    s.tcp_unlisten(l).unwrap();
    let rst = parse_tcp(&single(drain(&mut s, now)));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((rst.seq, rst.ack), (synack.seq + 1, Some(PEER_ISS + 1)));
    assert_eq!(s.tcp_connection_count(), 0);
    assert!(!s.tcp_port_in_use(80));
    assert_eq!(s.tcp_accept(l), Err(StackError::BadHandle));
    // The port is closed now.
    let rst = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_001, 80, PEER_ISS))));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
}

#[test]
fn data_and_fin_that_arrive_before_accept_are_announced_after_it() {
    let (mut s, now) = stack();
    let l = s.tcp_listen(80, 4).unwrap();
    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    // The handshake's last ACK carries a request and a FIN, as a short client sends.
    let frame = seg_frame(
        40_000,
        80,
        TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
        PEER_ISS + 1,
        Some(synack.seq + 1),
        b"GET /",
    );
    let ack = parse_tcp(&single(exchange(&mut s, now, frame)));
    assert_eq!(ack.ack, Some(PEER_ISS + 1 + 5 + 1));
    assert_eq!(events(&mut s), vec![Event::AcceptReady(l)]);
    let (c, _) = s.tcp_accept(l).unwrap();
    assert_eq!(
        events(&mut s),
        vec![Event::Tcp(c, TcpEvent::Readable), Event::Tcp(c, TcpEvent::PeerClosed)],
        "an application that waits for events must learn of the data"
    );
    assert_eq!(s.tcp_recv(c, 100).unwrap(), Bytes::from_static(b"GET /"));
    assert_eq!(s.tcp_recv(c, 100), Err(StackError::Tcp(TcpError::Finished)));

    // Nothing to announce for a connection accepted before anything arrived.
    handshake(&mut s, now, l, 80, 40_001);
    assert!(events(&mut s).is_empty());
}

#[test]
fn an_unaccepted_connection_reset_by_the_peer_is_freed() {
    let (mut s, now) = stack();
    let l = s.tcp_listen(80, 1).unwrap();
    let synack = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_000, 80, PEER_ISS))));
    assert!(exchange(&mut s, now, seg_frame(40_000, 80, TcpFlags::RST, PEER_ISS + 1, None, b"")).is_empty());
    assert_eq!(s.tcp_connection_count(), 0);
    // Established, then reset, before accept.
    let synack2 = parse_tcp(&single(exchange(&mut s, now, syn_frame(40_001, 80, PEER_ISS))));
    assert_ne!(synack.seq, synack2.seq, "ISNs differ per 4-tuple");
    exchange(&mut s, now, seg_frame(40_001, 80, TcpFlags::ACK, PEER_ISS + 1, Some(synack2.seq + 1), b""));
    assert!(exchange(&mut s, now, seg_frame(40_001, 80, TcpFlags::RST, PEER_ISS + 1, None, b"")).is_empty());
    assert_eq!(s.tcp_connection_count(), 0);
    assert_eq!(s.tcp_accept(l), Err(StackError::WouldBlock), "nothing left to accept");
    // The backlog slot is free.
    assert!(!exchange(&mut s, now, syn_frame(40_002, 80, PEER_ISS)).is_empty());
}

// ---- one connection -----------------------------------------------------------------

#[test]
fn delayed_acks_go_out_from_handle_timeout() {
    let mut cfg = config();
    cfg.tcp.ack_delay = Some(std::time::Duration::from_millis(10));
    let (mut s, now, c) = established_with(cfg);
    assert!(exchange(&mut s, now, c.segment(TcpFlags::ACK | TcpFlags::PSH, b"small")).is_empty(), "delayed");
    let due = now + std::time::Duration::from_millis(10);
    assert_eq!(s.poll_at(), Some(due));
    s.handle_timeout(due);
    let ack = parse_tcp(&single(drain(&mut s, due)));
    assert_eq!((ack.flags, ack.ack), (TcpFlags::ACK, Some(c.peer_seq + 5)));
    assert_eq!(s.poll_at(), None);
}

#[test]
fn segments_inside_ip_datagrams_with_options_are_read_correctly() {
    let (mut s, now, c) = established();
    let mut f = c.segment(TcpFlags::ACK | TcpFlags::PSH, b"with options").to_vec();
    // Insert 4 bytes of IP options (NOP NOP NOP EOL) after the 20-byte header.
    f.splice(34..34, [1, 1, 1, 0]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    refill_ip_checksum(&mut f);
    let ack = parse_tcp(&single(exchange(&mut s, now, f.into())));
    assert_eq!(ack.ack, Some(c.peer_seq + 12));
    assert_eq!(s.tcp_recv(c.handle, 100).unwrap(), Bytes::from_static(b"with options"));
}

#[test]
fn data_both_ways() {
    let (mut s, now, mut c) = established();
    // Peer → us.
    let ack = parse_tcp(&single(exchange(&mut s, now, c.segment(TcpFlags::ACK | TcpFlags::PSH, b"hello"))));
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!((ack.seq, ack.ack), (c.our_seq, Some(c.peer_seq + 5)));
    assert!(ack.payload.is_empty());
    c.peer_seq += 5;
    assert_eq!(events(&mut s), vec![Event::Tcp(c.handle, TcpEvent::Readable)]);
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 5);
    assert_eq!(s.tcp_recv(c.handle, 3).unwrap(), Bytes::from_static(b"hel"));
    assert_eq!(s.tcp_recv(c.handle, 100).unwrap(), Bytes::from_static(b"lo"));
    assert_eq!(s.tcp_recv(c.handle, 100), Err(StackError::Tcp(TcpError::WouldBlock)));

    // Us → peer.
    assert_eq!(s.tcp_send(c.handle, Bytes::from_static(b"world")), Ok(5));
    let seg = parse_tcp(&single(drain(&mut s, now)));
    assert_eq!(seg.flags, TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!((seg.seq, seg.ack), (c.our_seq, Some(c.peer_seq)));
    assert_eq!(seg.payload, b"world");
    c.our_seq += 5;
    assert!(s.poll_at().is_some(), "the retransmission timer runs");

    // The peer's ACK stops it; nothing is sent in answer.
    assert!(exchange(&mut s, now, c.segment(TcpFlags::ACK, b"")).is_empty());
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.tcp(c.handle).unwrap().stats().retransmits, 0);
}

#[test]
fn large_sends_are_cut_at_the_mss() {
    let (mut s, now, c) = established();
    let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    assert_eq!(s.tcp_send(c.handle, Bytes::from(data.clone())), Ok(4000));
    let segs: Vec<OutTcp> = drain(&mut s, now).iter().map(|f| parse_tcp(f)).collect();
    let lens: Vec<usize> = segs.iter().map(|g| g.payload.len()).collect();
    assert_eq!(lens, vec![1460, 1460, 1080]);
    let mut seq = c.our_seq;
    let mut got = Vec::new();
    for g in &segs {
        assert_eq!(g.seq, seq);
        seq += g.payload.len();
        got.extend_from_slice(&g.payload);
    }
    assert_eq!(got, data);
    assert!(segs[2].flags.contains(TcpFlags::PSH));
}

#[test]
fn unacknowledged_data_is_retransmitted_after_the_rto() {
    let (mut s, now, c) = established();
    s.tcp_send(c.handle, Bytes::from_static(b"again")).unwrap();
    let first = parse_tcp(&single(drain(&mut s, now)));
    let rto = s.poll_at().unwrap();
    s.handle_timeout(rto);
    let again = parse_tcp(&single(drain(&mut s, rto)));
    assert_eq!((again.seq, again.payload), (first.seq, first.payload));
    assert_eq!(s.tcp(c.handle).unwrap().stats().retransmits, 1);
}

#[test]
fn tcp_close_sends_fin_and_the_connection_is_reaped_after_time_wait() {
    let (mut s, now, mut c) = established();
    s.tcp_close(c.handle).unwrap();
    assert_eq!(s.tcp(c.handle).err(), Some(StackError::BadHandle), "the handle is given up");
    let fin = parse_tcp(&single(drain(&mut s, now)));
    assert_eq!(fin.flags, TcpFlags::FIN | TcpFlags::ACK);
    assert_eq!((fin.seq, fin.ack), (c.our_seq, Some(c.peer_seq)));
    c.our_seq += 1;
    assert_eq!(s.tcp_connection_count(), 1);

    // The peer acknowledges our FIN (FIN-WAIT-2), then sends its own.
    assert!(exchange(&mut s, now, c.segment(TcpFlags::ACK, b"")).is_empty());
    let ack = parse_tcp(&single(exchange(&mut s, now, c.segment(TcpFlags::FIN | TcpFlags::ACK, b""))));
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!((ack.seq, ack.ack), (c.our_seq, Some(c.peer_seq + 1)));
    assert!(events(&mut s).is_empty(), "a released connection raises no events");

    // TIME-WAIT: a retransmitted FIN is acknowledged again.
    let ack = parse_tcp(&single(exchange(&mut s, now, c.segment(TcpFlags::FIN | TcpFlags::ACK, b""))));
    assert_eq!(ack.ack, Some(c.peer_seq + 1));
    assert_eq!(s.tcp_connection_count(), 1);
    assert_eq!(s.poll_at(), Some(now + TIME_WAIT));
    assert!(s.tcp_port_in_use(80));

    s.handle_timeout(now + TIME_WAIT - std::time::Duration::from_millis(1));
    assert!(drain(&mut s, now + TIME_WAIT).is_empty());
    assert_eq!(s.tcp_connection_count(), 1, "not before 2*MSL");

    let end = now + TIME_WAIT;
    s.handle_timeout(end);
    assert!(drain(&mut s, end).is_empty(), "TIME-WAIT ends silently");
    assert_eq!(s.tcp_connection_count(), 0);
    assert_eq!(s.poll_at(), None);

    // The 4-tuple is free: a segment for it now gets a reset from the listener's port.
    let rst = parse_tcp(&single(exchange(&mut s, end, c.segment(TcpFlags::ACK, b""))));
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, c.our_seq));
}

#[test]
fn passive_close_needs_no_time_wait() {
    let (mut s, now, mut c) = established();
    let ack = parse_tcp(&single(exchange(&mut s, now, c.segment(TcpFlags::FIN | TcpFlags::ACK, b"bye"))));
    c.peer_seq += 4;
    assert_eq!(ack.ack, Some(c.peer_seq));
    assert_eq!(
        events(&mut s),
        vec![Event::Tcp(c.handle, TcpEvent::Readable), Event::Tcp(c.handle, TcpEvent::PeerClosed)]
    );
    assert_eq!(s.tcp_recv(c.handle, 10).unwrap(), Bytes::from_static(b"bye"));
    assert_eq!(s.tcp_recv(c.handle, 10), Err(StackError::Tcp(TcpError::Finished)));
    assert_eq!(s.tcp(c.handle).unwrap().state(), State::CloseWait);

    s.tcp_close(c.handle).unwrap();
    let fin = parse_tcp(&single(drain(&mut s, now)));
    assert_eq!((fin.flags, fin.seq, fin.ack), (TcpFlags::FIN | TcpFlags::ACK, c.our_seq, Some(c.peer_seq)));
    c.our_seq += 1;
    assert!(exchange(&mut s, now, c.segment(TcpFlags::ACK, b"")).is_empty());
    assert_eq!(s.tcp_connection_count(), 0, "LAST-ACK → CLOSED frees it at once");
    assert_eq!(s.poll_at(), None);
}

#[test]
fn tcp_abort_sends_rst_and_frees_the_connection() {
    let (mut s, now, c) = established();
    exchange(&mut s, now, c.segment(TcpFlags::ACK | TcpFlags::PSH, b"unread"));
    s.tcp_send(c.handle, Bytes::from_static(b"unacked")).unwrap();
    let data = parse_tcp(&single(drain(&mut s, now)));
    s.tcp_abort(c.handle).unwrap();
    let rst = parse_tcp(&single(drain(&mut s, now)));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((rst.seq, rst.ack), (data.seq + 7, Some(c.peer_seq + 6)), "SEQ=SND.MAX, ACK=RCV.NXT");
    assert_eq!(s.tcp_connection_count(), 0);
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.tcp_send(c.handle, Bytes::from_static(b"x")), Err(StackError::BadHandle));
    assert_eq!(s.tcp_abort(c.handle), Err(StackError::BadHandle));
}

#[test]
fn a_peer_reset_is_reported_and_the_handle_stays_until_closed() {
    let (mut s, now, c) = established();
    assert!(exchange(&mut s, now, c.segment(TcpFlags::RST | TcpFlags::ACK, b"")).is_empty());
    assert_eq!(
        events(&mut s),
        vec![Event::Tcp(c.handle, TcpEvent::Error(TcpError::Reset)), Event::Tcp(c.handle, TcpEvent::Closed)]
    );
    assert_eq!(s.tcp_recv(c.handle, 1), Err(StackError::Tcp(TcpError::Reset)));
    assert_eq!(s.tcp_connection_count(), 1, "the application still holds the handle");
    s.tcp_close(c.handle).unwrap();
    assert!(drain(&mut s, now).is_empty());
    assert_eq!(s.tcp_connection_count(), 0);
}

#[test]
fn active_open_through_arp() {
    let now = std::time::Instant::now();
    let mut s = demi_net_stack::iface::Stack::new(config(), now);
    let c = s.tcp_connect(now, 0, peer(80)).unwrap();
    let local = s.tcp(c).unwrap().local();
    assert!(local.port() >= 49_152);
    let arp = single(drain(&mut s, now));
    assert!(matches!(parse(&arp), Out::Arp(..)));
    let syn = parse_tcp(&single(exchange(&mut s, now, arp_reply_from_peer())));
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!((syn.src_port, syn.dst_port, syn.ack), (local.port(), 80, None));
    assert_eq!(syn.mss, Some(1460));
    let synack = demi_net_stack::wire::TcpRepr {
        seq_number: PEER_ISS,
        ack_number: Some(syn.seq + 1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window_len: 1000,
        max_seg_size: Some(1200),
        ..Default::default()
    };
    let ack = parse_tcp(&single(exchange(&mut s, now, tcp_frame(peer(80), local, &synack))));
    assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, syn.seq + 1, Some(PEER_ISS + 1)));
    assert_eq!(events(&mut s), vec![Event::Tcp(c, TcpEvent::Connected)]);
    assert_eq!(s.tcp(c).unwrap().send_mss(), 1200);
}

#[test]
fn connect_refused_by_a_reset() {
    let (mut s, now) = stack();
    let c = s.tcp_connect(now, 50_000, peer(81)).unwrap();
    let syn = parse_tcp(&single(drain(&mut s, now)));
    let rst = seg_frame(81, 50_000, TcpFlags::RST | TcpFlags::ACK, SeqNumber(0), Some(syn.seq + 1), b"");
    assert!(exchange(&mut s, now, rst).is_empty());
    assert_eq!(
        events(&mut s),
        vec![Event::Tcp(c, TcpEvent::Error(TcpError::Refused)), Event::Tcp(c, TcpEvent::Closed)]
    );
}

#[test]
fn connections_can_have_their_own_tcp_settings_and_buffer_memory_is_capped() {
    use demi_net_stack::tcp::{CongestionControl, TcpConfig};
    // A cap that fits exactly two connections of the default buffer sizes.
    let mut cfg = config();
    let per_conn = cfg.tcp.send_buffer + cfg.tcp.recv_buffer;
    cfg.max_buffer_memory = 2 * per_conn;
    let (mut s, now) = stack_with(cfg);
    let remote = |port| std::net::SocketAddrV4::new(PEER_IP, port);
    // Per-connection settings: a connection with no congestion control and small
    // buffers leaves room for more.
    let small = TcpConfig {
        congestion: CongestionControl::None,
        send_buffer: 1024,
        recv_buffer: 1024,
        ..s.config().tcp.clone()
    };
    let a = s.tcp_connect(now, 0, remote(7001)).unwrap();
    let b = s.tcp_connect_with(now, 0, remote(7002), &small).unwrap();
    assert_eq!(s.tcp(b).unwrap().buffer_budget(), 2048);
    assert_eq!(s.tcp(a).unwrap().buffer_budget(), per_conn);
    // A second full-sized one would pass the cap.
    assert_eq!(s.tcp_connect(now, 0, remote(7003)), Err(StackError::NoBufferSpace));
    // Freeing one makes room again.
    s.tcp_abort(a).unwrap();
    while s.poll_transmit(now).is_some() {}
    assert!(s.tcp_connect(now, 0, remote(7004)).is_ok());
}

#[test]
fn a_segment_gathered_from_odd_sized_buffers_has_a_correct_checksum() {
    // Data queued before the handshake completes goes out as one segment made of
    // several application buffers; their odd lengths put later ones at odd offsets,
    // which the checksum computed while copying must account for.
    let (mut s, now) = stack();
    let c = s.tcp_connect(now, 0, peer(80)).unwrap();
    let local = s.tcp(c).unwrap().local();
    let syn = parse_tcp(&single(drain(&mut s, now)));
    let chunks: [&'static [u8]; 4] = [b"abc", b"de", b"fghij", b"k"];
    for chunk in chunks {
        assert_eq!(s.tcp_send(c, Bytes::from_static(chunk)), Ok(chunk.len()));
    }
    let synack = demi_net_stack::wire::TcpRepr {
        seq_number: PEER_ISS,
        ack_number: Some(syn.seq + 1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window_len: 1000,
        ..Default::default()
    };
    // parse_tcp verifies the checksum of every frame.
    let out: Vec<_> = exchange(&mut s, now, tcp_frame(peer(80), local, &synack)).iter().map(|f| parse_tcp(f)).collect();
    let data: Vec<u8> = out.iter().flat_map(|seg| seg.payload.clone()).collect();
    assert_eq!(data, b"abcdefghijk");
}
