//! The queue API over storage: `creat`/`open` give queue descriptors, `push` appends
//! durable records, `pop` reads them back whole and in order, `seek`/`truncate`, and
//! typed errors — under the POSIX and the memory libOS alike, from synchronous and
//! async code. Files live in the target directory (a real file system: O_DIRECT does
//! not work on tmpfs).

use demi::{Bytes, Config, LibOs, LibOsKind, OpCode, QError, QValue, Sga, StorageError};
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage_queue");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}", std::process::id()))
}

fn record(i: usize) -> Sga {
    Sga::from_segments([Bytes::from(format!("head-{i}")), Bytes::from(vec![i as u8; 100 + i * 37 % 5000])])
}

fn pop_sga(libos: &LibOs, qd: demi::QDesc) -> Sga {
    libos.blocking_pop(qd).unwrap().into_sga().unwrap()
}

fn round_trip(libos: &LibOs, name: &str) {
    let p = path(name);
    let qd = libos.creat(&p).unwrap();
    // 32 pushes in flight at once: they complete in order and share flushes.
    let qts: Vec<_> = (0..32).map(|i| libos.push(qd, record(i)).unwrap()).collect();
    for r in libos.wait_all(&qts, None).unwrap() {
        assert_eq!(r.opcode, OpCode::Push);
        assert_eq!(r.qd, qd);
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
    assert_eq!(libos.log_len(qd).unwrap(), 32);
    libos.close(qd).unwrap();
    assert_eq!(libos.push(qd, record(0)), Err(QError::BadDescriptor));

    let qd = libos.open(&p).unwrap();
    assert_eq!(libos.log_len(qd).unwrap(), 32);
    for i in 0..32 {
        let s = pop_sga(libos, qd);
        assert_eq!(s, record(i));
        assert_eq!(s.num_segments(), 2, "multi-segment elements come back whole");
    }
    assert!(pop_sga(libos, qd).is_empty(), "an empty element marks the end of the log");
    libos.seek(qd, 5).unwrap();
    assert_eq!(pop_sga(libos, qd), record(5));
    libos.truncate(qd, 10).unwrap();
    libos.blocking_push(qd, record(99)).unwrap().ok().unwrap();
    libos.close(qd).unwrap();
    let qd = libos.open(&p).unwrap();
    assert_eq!(libos.log_len(qd).unwrap(), 11);
    libos.seek(qd, 10).unwrap();
    assert_eq!(pop_sga(libos, qd), record(99));
    libos.close(qd).unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn storage_queues_on_the_posix_libos() {
    round_trip(&LibOs::posix().unwrap(), "posix");
}

#[test]
fn storage_queues_on_the_memory_libos() {
    let libos = LibOs::new(&Config::new(LibOsKind::Memory)).unwrap();
    round_trip(&libos, "memory");
}

#[test]
fn bad_input_is_a_typed_error() {
    let libos = LibOs::posix().unwrap();
    let p = path("notalog");
    std::fs::write(&p, vec![b'x'; 8192]).unwrap();
    assert_eq!(libos.open(&p).err(), Some(StorageError::NotALog));
    std::fs::write(&p, b"").unwrap();
    assert_eq!(libos.open(&p).err(), Some(StorageError::NotALog));
    std::fs::remove_file(&p).unwrap();
    assert_eq!(libos.open(&p).err(), Some(StorageError::Io(libc::ENOENT)));

    let qd = libos.creat(&p).unwrap();
    assert!(matches!(libos.push(qd, Sga::new()), Err(QError::InvalidArgument(_))));
    assert_eq!(libos.push(qd, Sga::from(vec![0u8; (1 << 20) + 1])), Err(QError::MessageTooLong));
    assert!(matches!(libos.seek(qd, 1), Err(QError::InvalidArgument(_))));
    // Socket calls on a storage queue, storage calls on a socket: bad descriptors.
    assert!(libos.local_addr(qd).is_err());
    let sock = libos.socket(demi::Domain::Ipv4, demi::SocketType::Datagram).unwrap();
    assert_eq!(libos.seek(sock, 0), Err(QError::BadDescriptor));
    libos.close(sock).unwrap();
    // The largest record goes through.
    libos.blocking_push(qd, Sga::from(vec![7u8; 1 << 20])).unwrap().ok().unwrap();
    libos.close(qd).unwrap();
    let qd = libos.open(&p).unwrap();
    assert_eq!(pop_sga(&libos, qd).len(), 1 << 20);
    libos.close(qd).unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn concurrent_async_pushers_share_flushes() {
    let rt = demi::Runtime::new().unwrap();
    rt.block_on(async {
        let libos = LibOs::posix().unwrap();
        let p = path("async");
        let qd = libos.creat(&p).unwrap();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let l = libos.clone();
            tasks.push(demi::spawn(async move {
                for i in 0..20 {
                    let r = l.push(qd, record(t * 100 + i)).unwrap().await.unwrap();
                    assert_eq!(r.value, Ok(QValue::Pushed));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(libos.log_len(qd).unwrap(), 640);
        // Every record is there once; each pusher's records are in its own order.
        let mut seen = vec![Vec::new(); 32];
        for _ in 0..640 {
            let s = libos.pop(qd).unwrap().await.unwrap().into_sga().unwrap();
            let head = String::from_utf8(s.segments()[0].to_vec()).unwrap();
            let n: usize = head.strip_prefix("head-").unwrap().parse().unwrap();
            assert_eq!(s, record(n));
            seen[n / 100].push(n % 100);
        }
        for s in seen {
            assert_eq!(s, (0..20).collect::<Vec<_>>());
        }
        libos.close(qd).unwrap();
        std::fs::remove_file(&p).unwrap();
    });
}
