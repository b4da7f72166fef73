//! The shared-memory libOS under a runtime that parks when idle (`DEMI_IDLE=park`):
//! each side sleeps in epoll on its doorbell and its peer rings it, so traffic flows
//! without either loop spinning. Two threads stand for the two processes (each its
//! own runtime and side of one link under /dev/shm).

mod common;

use common::{pattern, pop_exact_async, w};
use demi::{Config, Domain, IdlePolicy, LibOs, LibOsKind, Sga, SocketType};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUNDS: u32 = 200;

fn config(host: u8, link: &str) -> Config {
    let mut c = Config::new(LibOsKind::Shm);
    c.net.host = host;
    c.net.link = link.to_string();
    c.idle = IdlePolicy::Park;
    c
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-pointer for the duration of the call.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn parked_sides_are_woken_by_their_peer_and_do_not_spin_while_idle() {
    let link = format!("park-{}", std::process::id());
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let server_link = link.clone();
    let server = std::thread::spawn(move || {
        let config = config(0, &server_link);
        let rt = config.runtime_builder().build().unwrap();
        rt.block_on(async move {
            let libos = LibOs::new(&config).unwrap();
            let l = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
            libos.bind(l, "0.0.0.0:7100".parse().unwrap()).unwrap();
            libos.listen(l, 4).unwrap();
            addr_tx.send(libos.local_addr(l).unwrap()).unwrap();
            let (qd, _) = w(libos.accept(l).unwrap()).await.into_accepted().unwrap();
            // Echo until the end of the stream; measure what waiting for the
            // client's pause cost this thread in CPU.
            let mut idle = None;
            loop {
                let (wall, cpu) = (Instant::now(), thread_cpu());
                let sga = w(libos.pop(qd).unwrap()).await.into_sga().unwrap();
                let waited = (wall.elapsed(), thread_cpu() - cpu);
                if waited.0 >= Duration::from_millis(200) {
                    idle = Some(waited);
                }
                if sga.is_empty() {
                    break;
                }
                w(libos.push(qd, sga).unwrap()).await.ok().unwrap();
            }
            libos.close(qd).unwrap();
            idle
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("the server listens");
    let config = config(1, &link);
    let rt = config.runtime_builder().build().unwrap();
    rt.block_on(async {
        let libos = LibOs::new(&config).unwrap();
        let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
        w(libos.connect(qd, addr).unwrap()).await.ok().unwrap();
        let started = Instant::now();
        for k in 0..ROUNDS {
            if k == ROUNDS / 2 {
                // Both sides go quiet: each loop must sleep, then wake for the next
                // message.
                demi::time::sleep(Duration::from_millis(300)).await;
            }
            let msg = pattern(64, k);
            w(libos.push(qd, Sga::from(msg.clone())).unwrap()).await.ok().unwrap();
            assert_eq!(pop_exact_async(&libos, qd, 64).await, msg, "round {k}");
        }
        // Woken by the doorbell, not by timers: a round trip that waited for a
        // delayed-ACK or retransmission timer would take milliseconds.
        let busy = started.elapsed() - Duration::from_millis(300);
        assert!(busy < Duration::from_secs(2), "{ROUNDS} round trips took {busy:?} besides the pause");
        libos.close(qd).unwrap();
    });
    let (wall, cpu) = server.join().unwrap().expect("the server waited through the client's pause");
    assert!(
        cpu < wall / 2,
        "the parked server used {cpu:?} of CPU while waiting {wall:?} for the next message: it spun"
    );
}
