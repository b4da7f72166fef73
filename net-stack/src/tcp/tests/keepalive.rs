//! Keepalive (RFC 1122 §4.2.3.6): probes of an idle connection, their answers, and
//! giving up.

use super::*;
use crate::tcp::Keepalive;

fn ka_config() -> TcpConfig {
    TcpConfig {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            count: 3,
        }),
        ..config()
    }
}

/// A probe: an ACK one byte before SND.NXT.
fn probe() -> TcpRepr<'static> {
    ours(LOCAL_ISS, Some(REMOTE_ISS + 1))
}

#[test]
fn probes_after_idle_then_every_interval() {
    let mut h = Harness::established(&ka_config());
    let start = h.elapsed();
    assert_eq!(h.advance_to_timer(), Duration::from_secs(60));
    h.expect(probe());
    h.expect_nothing();
    for _ in 0..2 {
        assert_eq!(h.advance_to_timer(), Duration::from_secs(10));
        h.expect(probe());
        h.expect_nothing();
    }
    assert_eq!(h.conn.stats().keepalive_probes, 3);
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.elapsed() - start, Duration::from_secs(80));
}

#[test]
fn an_answered_probe_restarts_the_idle_period() {
    let mut h = Harness::established(&ka_config());
    h.advance_to_timer();
    h.expect(probe());
    h.advance(Duration::from_secs(1));
    // The peer's ACK of our probe.
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.advance_to_timer(), Duration::from_secs(60));
    h.expect(probe());
    // Any segment counts, data too.
    h.send(TcpRepr {
        payload: b"hi",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.expect(TcpRepr {
        window_len: 65_533,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 3))
    });
    assert_eq!(h.conn.poll_at(), Some(h.now + Duration::from_secs(60)));
}

#[test]
fn unanswered_probes_reset_the_connection() {
    let mut h = Harness::established(&ka_config());
    for _ in 0..3 {
        h.advance_to_timer();
        h.expect(probe());
    }
    assert_eq!(h.advance_to_timer(), Duration::from_secs(10));
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), TcpFlags::RST)
    });
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::TimedOut), TcpEvent::Closed]
    );
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn no_probe_while_data_is_outstanding_nor_by_default() {
    let mut h = Harness::established(&ka_config());
    h.advance(Duration::from_secs(59));
    h.write(b"data");
    h.recv().expect("data");
    // The retransmission timer watches the peer; keepalive stays quiet.
    h.advance(Duration::from_secs(1));
    h.expect_data(with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), TcpFlags::PSH), b"data");
    h.expect_nothing();
    assert_eq!(h.conn.stats().keepalive_probes, 0);

    let h = Harness::established(&config());
    assert_eq!(h.conn.poll_at(), None);
}
