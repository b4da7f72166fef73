//! The DPDK device: demi's stack on a DPDK poll-mode driver (cargo feature `dpdk`).
//!
//! [`DpdkDevice::open`] initialises DPDK's environment abstraction layer (EAL) with
//! the arguments of a [`DpdkConfig`] (once per process), sets up one Ethernet port
//! with one receive and one transmit queue, and starts it. The runtime polls it
//! inline: [`Device::rx_burst`] and [`Device::tx_burst`] call `rte_eth_rx_burst` and
//! `rte_eth_tx_burst` in bursts of up to [`BURST`] frames; no thread of demi's runs
//! behind it (EAL starts its own service threads: interrupts, telemetry).
//!
//! It works with real NICs bound to a DPDK driver and with DPDK's virtual devices,
//! which need no NIC and no hugepages, e.g. as root:
//!
//! ```text
//! --no-huge -m 256 --no-shconf --no-pci -l 0 --vdev=net_tap0,iface=demi0
//! --no-huge -m 256 --no-shconf --no-pci -l 0 --vdev=net_af_packet0,iface=veth0
//! ```
//!
//! # Buffers
//! Two mempools per port, one for receiving and one for sending (a shared pool can
//! deadlock when handling a received frame needs a buffer to send first).
//!
//! - Receive is zero-copy: a frame is a [`Bytes`] over the mbuf's data
//!   ([`Bytes::from_owner`]); the mbuf goes back to its pool when the last `Bytes`
//!   (or slice of it) is dropped. Small frames (ACKs, ARP, pings) are copied and
//!   their mbuf freed at once, and so is every frame while the receive pool runs low,
//!   so that payload held in receive buffers never starves the port of mbufs.
//! - Send copies each frame into an mbuf of the transmit pool. An empty pool or a
//!   full transmit ring leaves the frames queued: back-pressure, never a crash.
//!
//! A `Bytes` may be dropped on any thread, so the mbuf owner is `Send`. Freeing an
//! mbuf from another thread is sound: a thread that is not an EAL lcore has no
//! per-lcore mempool cache, so `rte_pktmbuf_free` returns the mbuf straight to the
//! pool's ring, and the default pool ring (`ring_mp_mc`) is multi-producer and
//! multi-consumer safe. An EAL lcore thread uses only its own cache. The pools live
//! as long as the process (a port opened again reuses them), so an mbuf outliving
//! its device is never freed into a freed pool; EAL is never cleaned up for the same
//! reason.
//!
//! # Checksums
//! When [`DpdkConfig::checksum_offload`] is on and the port offers IPv4, TCP and UDP
//! checksum offload both ways, the device enables them and says so in
//! [`DeviceCaps`], so the stack neither computes nor verifies checksums. The device
//! then keeps that promise for every frame: it sets each sent IPv4 frame's mbuf
//! offload flags (`l2_len`, `l3_len`, the TCP/UDP pseudo-header sum in the checksum
//! field, as DPDK's API asks) and computes ICMP checksums itself (no NIC offloads
//! them); on receive it drops frames the port marks bad and verifies in software what
//! the port left unverified. Ports without those offloads (af_packet, ring, …) leave
//! checksums to the stack.

use super::{Device, DeviceCaps};
use bytes::Bytes;
use demi_dpdk_sys as sys;
use demi_dpdk_sys::flags;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Frames per `rte_eth_rx_burst` / `rte_eth_tx_burst` call.
pub const BURST: usize = 64;

/// Received frames up to this length are copied and their mbuf freed at once.
const COPY_MAX: usize = 128;

/// How to set up DPDK and the port. `DpdkConfig::new(eal_args)` gives the defaults.
///
/// ```
/// use demi_libos::device::dpdk::DpdkConfig;
/// let cfg = DpdkConfig::new(DpdkConfig::parse_eal_args(
///     "--no-huge -m 256 --no-shconf --no-pci -l 0 --vdev=net_tap0,iface=demi0",
/// ));
/// assert_eq!(cfg.mtu, 1500);
/// assert_eq!(cfg.port, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpdkConfig {
    /// EAL arguments, without the program name (e.g. `--no-huge`, `-l 0`,
    /// `--vdev=net_tap0,iface=demi0`).
    pub eal_args: Vec<String>,
    /// Which port; `None`: the first one DPDK found.
    pub port: Option<u16>,
    /// Receive descriptors (the driver may adjust it).
    pub rx_ring_size: u16,
    /// Transmit descriptors (the driver may adjust it).
    pub tx_ring_size: u16,
    /// mbufs in the receive pool.
    pub rx_pool_size: u32,
    /// mbufs in the transmit pool.
    pub tx_pool_size: u32,
    /// Per-lcore cache of each pool.
    pub pool_cache: u32,
    /// IP MTU of the port.
    pub mtu: usize,
    /// Use the port's IPv4/TCP/UDP checksum offloads when it has them all.
    pub checksum_offload: bool,
    /// Receive frames for every address, not only the port's own and broadcasts.
    pub promiscuous: bool,
}

impl DpdkConfig {
    /// Defaults with these EAL arguments: the first port, 1024-entry rings, pools of
    /// 8191 (rx) and 4095 (tx) mbufs, MTU 1500, checksum offload when offered.
    pub fn new<I, S>(eal_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        DpdkConfig {
            eal_args: eal_args.into_iter().map(Into::into).collect(),
            port: None,
            rx_ring_size: 1024,
            tx_ring_size: 1024,
            rx_pool_size: 8191,
            tx_pool_size: 4095,
            pool_cache: 256,
            mtu: 1500,
            checksum_offload: true,
            promiscuous: false,
        }
    }

    /// Splits an argument string (as in `DEMI_DPDK_ARGS`) at whitespace.
    pub fn parse_eal_args(args: &str) -> Vec<String> {
        args.split_whitespace().map(str::to_string).collect()
    }
}

/// Why the DPDK device could not be opened. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpdkError {
    /// `rte_eal_init` failed; `errno` is DPDK's `rte_errno`. Every later open in the
    /// same process reports this again (EAL cannot be retried reliably).
    Eal {
        /// The arguments it was given.
        args: Vec<String>,
        /// `rte_errno`.
        errno: i32,
    },
    /// EAL runs already (it starts once per process) with other arguments.
    EalAlreadyInitialized {
        /// The arguments it runs with.
        running: Vec<String>,
        /// The arguments asked for now.
        wanted: Vec<String>,
    },
    /// An EAL argument contains a NUL byte.
    BadArgument(String),
    /// DPDK found no Ethernet port.
    NoPorts,
    /// The configured port does not exist.
    NoSuchPort(u16),
    /// The port is already open in this process.
    PortInUse(u16),
    /// The MTU is outside what the port supports.
    Mtu {
        /// Asked for.
        mtu: usize,
        /// The port's smallest.
        min: u16,
        /// The port's largest.
        max: u16,
    },
    /// A mempool could not be made (usually: not enough memory for EAL).
    Pool {
        /// Which pool.
        name: String,
        /// `rte_errno`.
        errno: i32,
    },
    /// Setting up the port failed at `step` (a DPDK function) with `-errno`.
    Port {
        /// The port.
        port: u16,
        /// The DPDK call that failed.
        step: &'static str,
        /// Its error number.
        errno: i32,
    },
}

fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }.to_string_lossy().into_owned()
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkError::Eal { args, errno } => {
                write!(f, "DPDK EAL initialisation failed ({}) with arguments `{}`: ", strerror(*errno), args.join(" "))?;
                f.write_str(match *errno {
                    libc::EINVAL => "check the EAL arguments (`--no-huge` and `--in-memory` cannot be combined; see `dpdk-testpmd --help` for the list)",
                    libc::EACCES | libc::EPERM => "run as root (DPDK needs it for hugepages, VFIO and tap/af_packet devices)",
                    libc::ENOMEM => "not enough memory: reserve hugepages (echo 128 > /proc/sys/vm/nr_hugepages) or pass `--no-huge -m 256`",
                    libc::EALREADY => "EAL was already initialised in this process",
                    libc::ENODEV | libc::ENOENT => "a device given with --vdev or -a could not be found or probed; check its name and interface",
                    _ => "see the EAL log above; docs/setup.md (section dpdk) lists the usual causes",
                })?;
                f.write_str(" (EAL starts at most once per process: fix this and start a new process)")
            }
            DpdkError::EalAlreadyInitialized { running, wanted } => write!(
                f,
                "DPDK EAL runs already in this process with `{}` and cannot start again with `{}`: use the same EAL arguments for every DPDK device of a process",
                running.join(" "),
                wanted.join(" ")
            ),
            DpdkError::BadArgument(a) => write!(f, "EAL argument {a:?} contains a NUL byte"),
            DpdkError::NoPorts => f.write_str(
                "DPDK found no Ethernet port: give a virtual device (e.g. --vdev=net_tap0,iface=demi0) or bind a NIC to vfio-pci (dpdk-devbind.py) and allow it with -a PCI_ADDRESS",
            ),
            DpdkError::NoSuchPort(p) => write!(f, "DPDK has no port {p}: check the port number or leave it unset for the first port"),
            DpdkError::PortInUse(p) => write!(f, "DPDK port {p} is already open in this process: drop the other device first"),
            DpdkError::Mtu { mtu, min, max } => write!(f, "MTU {mtu} is outside what the port supports ({min} to {max})"),
            DpdkError::Pool { name, errno } => write!(
                f,
                "cannot create mempool {name} ({}): give EAL more memory (-m 512 with --no-huge, or more hugepages) or smaller pools",
                strerror(*errno)
            ),
            DpdkError::Port { port, step, errno } => {
                write!(f, "setting up DPDK port {port} failed in {step} ({})", strerror(*errno))
            }
        }
    }
}

impl std::error::Error for DpdkError {}

// ---- process-wide state ----------------------------------------------------------

/// A mempool pointer that may sit in a process-wide table.
#[derive(Clone, Copy)]
struct Pool(NonNull<sys::rte_mempool>);
// SAFETY: a mempool is process-wide DPDK memory; its operations are thread-safe
// (multi-producer/consumer rings), and the pointer itself is only an address.
unsafe impl Send for Pool {}

#[derive(Default)]
struct Process {
    /// The arguments EAL was started with; `None` before.
    eal: Option<Vec<String>>,
    /// EAL failed to start: it keeps part of the failed attempt's settings, so a
    /// second attempt in this process cannot be trusted; every open reports this.
    eal_failed: Option<DpdkError>,
    /// Ports open now.
    open: Vec<u16>,
    /// Pools made for each port (data room, rx, tx), kept for the life of the
    /// process and reused by later opens whose frames fit their data room.
    pools: HashMap<u16, Vec<(u16, Pool, Pool)>>,
}

static PROCESS: Mutex<Option<Process>> = Mutex::new(None);

fn process<R>(f: impl FnOnce(&mut Process) -> R) -> R {
    let mut guard = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Process::default))
}

fn eal_init(p: &mut Process, args: &[String]) -> Result<(), DpdkError> {
    if let Some(running) = &p.eal {
        return if running == args {
            Ok(())
        } else {
            Err(DpdkError::EalAlreadyInitialized { running: running.clone(), wanted: args.to_vec() })
        };
    }
    if let Some(e) = &p.eal_failed {
        return Err(e.clone());
    }
    let mut owned = vec![CString::new("demi").expect("no NUL")];
    for a in args {
        owned.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArgument(a.clone()))?);
    }
    // EAL may keep pointers into argv (and reorders it): the strings live as long as
    // the process.
    let owned: &'static mut [CString] = Vec::leak(owned);
    let argv: &'static mut [*mut libc::c_char] =
        Vec::leak(owned.iter().map(|s| s.as_ptr() as *mut libc::c_char).collect::<Vec<_>>());
    // SAFETY: argv holds argc valid NUL-terminated strings that are never freed.
    let ret = unsafe { sys::rte_eal_init(argv.len() as libc::c_int, argv.as_mut_ptr()) };
    if ret < 0 {
        // SAFETY: reads the calling thread's rte_errno.
        let errno = unsafe { sys::demi_errno() };
        let e = DpdkError::Eal { args: args.to_vec(), errno };
        p.eal_failed = Some(e.clone());
        return Err(e);
    }
    p.eal = Some(args.to_vec());
    Ok(())
}

fn check(port: u16, step: &'static str, ret: libc::c_int) -> Result<(), DpdkError> {
    if ret < 0 {
        Err(DpdkError::Port { port, step, errno: -ret })
    } else {
        Ok(())
    }
}

fn make_pool(name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Pool, DpdkError> {
    let cname = CString::new(name).expect("no NUL");
    // SAFETY: a valid name; EAL is initialised (the caller checked).
    let mp = unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache.min(512).min(n / 2), 0, data_room, socket) };
    match NonNull::new(mp) {
        Some(mp) => Ok(Pool(mp)),
        // SAFETY: reads the calling thread's rte_errno.
        None => Err(DpdkError::Pool { name: name.to_string(), errno: unsafe { sys::demi_errno() } }),
    }
}

// ---- the device ------------------------------------------------------------------

/// Counters of a [`DpdkDevice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpdkStats {
    /// Frames received and handed to the stack.
    pub rx_frames: u64,
    /// Of those, frames copied out of their mbuf (small, or the pool ran low).
    pub rx_copied: u64,
    /// Frames dropped on receive: checksum bad (port or software check).
    pub rx_bad_checksum: u64,
    /// Frames dropped on receive: scattered over several mbufs.
    pub rx_multi_segment: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames dropped on send: larger than the MTU allows (or than an mbuf holds).
    pub tx_oversize: u64,
    /// Times a send stopped because the transmit pool was empty or the ring full.
    pub tx_backpressure: u64,
}

/// One DPDK port as a [`Device`]. See the [module docs](self).
pub struct DpdkDevice {
    port: u16,
    rx_pool: Pool,
    tx_pool: Pool,
    rx_pool_size: u32,
    mac: EthernetAddress,
    mtu: usize,
    rx_offload: bool,
    tx_offload: bool,
    driver: String,
    mbufs: [*mut sys::rte_mbuf; BURST],
    stats: DpdkStats,
}

// SAFETY: the raw pointers are a scratch array of mbufs owned only during one burst
// call and pools that live for the process; the port's queues are used through
// `&mut self` only, so by one thread at a time, which DPDK allows from any thread.
unsafe impl Send for DpdkDevice {}

impl fmt::Debug for DpdkDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkDevice")
            .field("port", &self.port)
            .field("driver", &self.driver)
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .field("rx_checksum_offload", &self.rx_offload)
            .field("tx_checksum_offload", &self.tx_offload)
            .finish()
    }
}

impl DpdkDevice {
    /// Starts EAL (first call in the process; later calls must pass the same EAL
    /// arguments), then configures and starts the port.
    pub fn open(config: &DpdkConfig) -> Result<DpdkDevice, DpdkError> {
        process(|p| {
            eal_init(p, &config.eal_args)?;
            let port = match config.port {
                Some(port) => {
                    // SAFETY: EAL is initialised; any number may be asked about.
                    if unsafe { sys::rte_eth_dev_is_valid_port(port) } == 0 {
                        return Err(DpdkError::NoSuchPort(port));
                    }
                    port
                }
                None => {
                    // SAFETY: EAL is initialised.
                    let first = unsafe { sys::rte_eth_find_next(0) };
                    if u32::from(first) >= sys::RTE_MAX_ETHPORTS {
                        return Err(DpdkError::NoPorts);
                    }
                    first
                }
            };
            if p.open.contains(&port) {
                return Err(DpdkError::PortInUse(port));
            }
            let dev = Self::setup(p, port, config)?;
            p.open.push(port);
            Ok(dev)
        })
    }

    /// Two ports joined back to back in memory (DPDK's ring PMD: what one sends, the
    /// other receives), opened as devices with `config` (its `port` is ignored):
    /// demi's DPDK path without a NIC, a kernel or root, for tests and benchmarks.
    /// `name` (a few characters) names the rings and ports; each pair needs its own.
    pub fn ring_pair(config: &DpdkConfig, name: &str) -> Result<(DpdkDevice, DpdkDevice), DpdkError> {
        let ports = process(|p| -> Result<[u16; 2], DpdkError> {
            eal_init(p, &config.eal_args)?;
            let mut rings = [std::ptr::null_mut(); 2];
            for (i, ring) in rings.iter_mut().enumerate() {
                let rname = CString::new(format!("{name}_r{i}")).map_err(|_| DpdkError::BadArgument(name.into()))?;
                // SAFETY: EAL runs; a valid name; 4096 entries (a power of two), any
                // socket, multi-producer/consumer.
                *ring = unsafe { sys::rte_ring_create(rname.as_ptr(), 4096, sys::SOCKET_ID_ANY, 0) };
                if ring.is_null() {
                    // SAFETY: reads the calling thread's rte_errno.
                    return Err(DpdkError::Pool { name: format!("{name}_r{i}"), errno: unsafe { sys::demi_errno() } });
                }
            }
            let mut ports = [0u16; 2];
            for (i, port) in ports.iter_mut().enumerate() {
                let pname = CString::new(format!("{name}_p{i}")).map_err(|_| DpdkError::BadArgument(name.into()))?;
                // Port i receives from ring i and sends into the other one.
                let rx = [rings[i]];
                let tx = [rings[1 - i]];
                // SAFETY: EAL runs; live rings; the arrays outlive the call.
                let id = unsafe { sys::rte_eth_from_rings(pname.as_ptr(), rx.as_ptr(), 1, tx.as_ptr(), 1, 0) };
                if id < 0 {
                    // SAFETY: reads the calling thread's rte_errno.
                    return Err(DpdkError::Port { port: 0, step: "rte_eth_from_rings", errno: unsafe { sys::demi_errno() } });
                }
                *port = id as u16;
            }
            Ok(ports)
        })?;
        let mut a = config.clone();
        a.port = Some(ports[0]);
        let mut b = config.clone();
        b.port = Some(ports[1]);
        let (mut a, mut b) = (DpdkDevice::open(&a)?, DpdkDevice::open(&b)?);
        // The ring PMD gives every port the address 0: give each a locally
        // administered one (the ring delivers every frame, so no filter to update
        // when the driver cannot change it).
        for dev in [&mut a, &mut b] {
            let mac = [0x02, 0, 0, 0xdd, (dev.port >> 8) as u8, dev.port as u8];
            let mut addr = sys::rte_ether_addr { addr_bytes: mac };
            // SAFETY: a started port and a valid address.
            let _ = unsafe { sys::rte_eth_dev_default_mac_addr_set(dev.port, &mut addr) };
            dev.mac = EthernetAddress(mac);
        }
        Ok((a, b))
    }

    fn setup(p: &mut Process, port: u16, config: &DpdkConfig) -> Result<DpdkDevice, DpdkError> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: a valid port and a writable info struct.
        check(port, "rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(port, &mut info) })?;
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: the driver's name, a static C string.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        if config.mtu < usize::from(info.min_mtu) || config.mtu > usize::from(info.max_mtu) || config.mtu > 9000 {
            return Err(DpdkError::Mtu { mtu: config.mtu, min: info.min_mtu, max: info.max_mtu.min(9000) });
        }
        let rx_ck = flags::RX_OFFLOAD_IPV4_CKSUM | flags::RX_OFFLOAD_TCP_CKSUM | flags::RX_OFFLOAD_UDP_CKSUM;
        let tx_ck = flags::TX_OFFLOAD_IPV4_CKSUM | flags::TX_OFFLOAD_TCP_CKSUM | flags::TX_OFFLOAD_UDP_CKSUM;
        let rx_offload = config.checksum_offload && info.rx_offload_capa & rx_ck == rx_ck;
        let tx_offload = config.checksum_offload && info.tx_offload_capa & tx_ck == tx_ck;

        let mut conf = sys::rte_eth_conf::default();
        conf.rxmode.mtu = config.mtu as u32;
        if rx_offload {
            conf.rxmode.offloads = rx_ck;
        }
        if tx_offload {
            conf.txmode.offloads = tx_ck;
        }
        // SAFETY: a valid port and configuration; one queue each way.
        check(port, "rte_eth_dev_configure", unsafe { sys::rte_eth_dev_configure(port, 1, 1, &conf) })?;
        let (mut nb_rx, mut nb_tx) = (config.rx_ring_size, config.tx_ring_size);
        // SAFETY: the port is configured; the counts are writable.
        check(port, "rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nb_rx, &mut nb_tx)
        })?;
        // SAFETY: a valid port. A virtual device has no NUMA socket: -1, any socket.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port) };

        // A frame of the MTU must fit one mbuf (no scattered receive).
        let frame_max = config.mtu + 14 + 4;
        let data_room = (frame_max + sys::RTE_PKTMBUF_HEADROOM as usize).max(usize::from(flags::MBUF_DEFAULT_BUF_SIZE));
        let data_room = data_room as u16;
        let made = p.pools.entry(port).or_default();
        let (rx_pool, tx_pool) = match made.iter().find(|(room, ..)| *room >= data_room) {
            Some(&(_, rx, tx)) => (rx, tx),
            None => {
                let n = made.len();
                let rx = make_pool(&format!("demi_rx{port}_{n}"), config.rx_pool_size, config.pool_cache, data_room, socket)?;
                let tx = make_pool(&format!("demi_tx{port}_{n}"), config.tx_pool_size, config.pool_cache, data_room, socket)?;
                made.push((data_room, rx, tx));
                (rx, tx)
            }
        };
        let queue_socket = socket.max(0) as libc::c_uint;
        // SAFETY: a configured port, a live pool; default queue settings (NULL).
        check(port, "rte_eth_rx_queue_setup", unsafe {
            sys::rte_eth_rx_queue_setup(port, 0, nb_rx, queue_socket, std::ptr::null(), rx_pool.0.as_ptr())
        })?;
        // SAFETY: as above.
        check(port, "rte_eth_tx_queue_setup", unsafe {
            sys::rte_eth_tx_queue_setup(port, 0, nb_tx, queue_socket, std::ptr::null())
        })?;
        // SAFETY: a configured port with its queues set up.
        check(port, "rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(port) })?;
        if config.promiscuous {
            // SAFETY: a started port.
            check(port, "rte_eth_promiscuous_enable", unsafe { sys::rte_eth_promiscuous_enable(port) })?;
        }
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: a valid port and a writable address.
        check(port, "rte_eth_macaddr_get", unsafe { sys::rte_eth_macaddr_get(port, &mut addr) })?;
        Ok(DpdkDevice {
            port,
            rx_pool,
            tx_pool,
            rx_pool_size: config.rx_pool_size,
            mac: EthernetAddress(addr.addr_bytes),
            mtu: config.mtu,
            rx_offload,
            tx_offload,
            driver,
            mbufs: [std::ptr::null_mut(); BURST],
            stats: DpdkStats::default(),
        })
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port's driver (`net_tap`, `net_af_packet`, …).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Counters.
    pub fn stats(&self) -> DpdkStats {
        self.stats
    }

    /// Whether the receive pool is low enough that frames should be copied out.
    fn rx_pool_low(&self) -> bool {
        // SAFETY: a live pool (pools are never freed).
        let avail = unsafe { sys::rte_mempool_avail_count(self.rx_pool.0.as_ptr()) };
        avail < self.rx_pool_size / 4
    }

    /// Turns a received mbuf into a frame (or drops it), taking ownership of it.
    ///
    /// # Safety
    /// `m` is a received mbuf that nothing else owns.
    unsafe fn take_rx(&mut self, m: *mut sys::rte_mbuf, copy: bool) -> Option<Bytes> {
        // SAFETY: `m` is a valid mbuf (the caller's contract).
        let (segs, len, data, ol) = unsafe {
            (
                sys::demi_pktmbuf_nb_segs(m),
                usize::from(sys::demi_pktmbuf_data_len(m)),
                sys::demi_pktmbuf_data(m) as *const u8,
                sys::demi_pktmbuf_ol_flags(m),
            )
        };
        let owner = RxMbuf { m: NonNull::new(m)?, data, len };
        if segs != 1 {
            self.stats.rx_multi_segment += 1;
            return None; // dropping `owner` frees the chain
        }
        if self.rx_offload && !rx_checksums_ok(owner.as_ref(), ol) {
            self.stats.rx_bad_checksum += 1;
            return None;
        }
        self.stats.rx_frames += 1;
        if copy || len <= COPY_MAX {
            self.stats.rx_copied += 1;
            Some(Bytes::copy_from_slice(owner.as_ref()))
        } else {
            Some(Bytes::from_owner(owner))
        }
    }

    /// Copies `frame` into a fresh mbuf `m`, with the offload flags it needs.
    ///
    /// # Safety
    /// `m` is a freshly allocated mbuf of the transmit pool (the pools are made with a
    /// data room for a frame of the MTU, so this never fails; it returns `false`,
    /// leaving `m` as it was, if the frame does not fit all the same).
    unsafe fn fill_tx(&self, m: *mut sys::rte_mbuf, frame: &[u8]) -> bool {
        // SAFETY: a fresh, valid mbuf; append checks the tailroom (NULL: no room).
        let dst = unsafe { sys::demi_pktmbuf_append(m, frame.len() as u16) } as *mut u8;
        if dst.is_null() {
            return false;
        }
        // SAFETY: `dst` has `frame.len()` writable bytes; the buffers do not overlap.
        let out = unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
            std::slice::from_raw_parts_mut(dst, frame.len())
        };
        if self.tx_offload {
            if let Some((ol, l3_len)) = tx_checksums_prepare(out) {
                // SAFETY: a valid mbuf.
                unsafe { sys::demi_pktmbuf_set_tx_offload(m, ol, 14, l3_len) };
            }
        }
        true
    }
}

impl Device for DpdkDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: self.mac,
            mtu: self.mtu,
            rx_checksum_offload: self.rx_offload,
            tx_checksum_offload: self.tx_offload,
            idle: IdleMode::Spin,
            eager_tx: false,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let mut got = 0;
        let mut copy = None;
        while got < max {
            let want = (max - got).min(BURST);
            // SAFETY: a started port; `mbufs` has room for `want` pointers.
            let n = usize::from(unsafe { sys::demi_eth_rx_burst(self.port, 0, self.mbufs.as_mut_ptr(), want as u16) });
            if n == 0 {
                break;
            }
            let copy = *copy.get_or_insert_with(|| self.rx_pool_low());
            for i in 0..n {
                let m = self.mbufs[i];
                // SAFETY: the driver handed us `m`; nothing else owns it.
                if let Some(frame) = unsafe { self.take_rx(m, copy) } {
                    out.push(frame);
                    got += 1;
                }
            }
            if n < want {
                break;
            }
        }
        got
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let frame_max = self.mtu + 14;
        let mut taken = 0;
        while !frames.is_empty() {
            if frames[0].len() > frame_max || frames[0].len() < 14 {
                frames.pop_front();
                self.stats.tx_oversize += 1;
                taken += 1;
                continue;
            }
            let k = frames.iter().take(BURST).take_while(|f| (14..=frame_max).contains(&f.len())).count();
            let mut filled = 0;
            let mut unfit = false;
            for frame in frames.iter().take(k) {
                // SAFETY: a live pool.
                let m = unsafe { sys::demi_pktmbuf_alloc(self.tx_pool.0.as_ptr()) };
                if m.is_null() {
                    break;
                }
                // SAFETY: a fresh mbuf of the transmit pool.
                if !unsafe { self.fill_tx(m, frame) } {
                    // SAFETY: the mbuf is ours and was not handed to the driver.
                    unsafe { sys::demi_pktmbuf_free(m) };
                    unfit = true;
                    break;
                }
                self.mbufs[filled] = m;
                filled += 1;
            }
            let sent = if filled == 0 {
                0
            } else {
                // SAFETY: a started port and `filled` mbufs we own.
                usize::from(unsafe { sys::demi_eth_tx_burst(self.port, 0, self.mbufs.as_mut_ptr(), filled as u16) })
            };
            for &m in &self.mbufs[sent..filled] {
                // SAFETY: mbufs the driver did not take are still ours.
                unsafe { sys::demi_pktmbuf_free(m) };
            }
            frames.drain(..sent);
            taken += sent;
            self.stats.tx_frames += sent as u64;
            if unfit && sent == filled {
                // The frame now in front does not fit an mbuf: drop it, go on.
                frames.pop_front();
                self.stats.tx_oversize += 1;
                taken += 1;
                continue;
            }
            if sent < k {
                self.stats.tx_backpressure += 1;
                break;
            }
        }
        taken
    }
}

impl Drop for DpdkDevice {
    /// Stops the port (it can be opened again). Its pools stay: frames received from
    /// it may still be alive as `Bytes`.
    fn drop(&mut self) {
        // SAFETY: a started port; stopping it is always allowed.
        unsafe { sys::rte_eth_dev_stop(self.port) };
        process(|p| p.open.retain(|&q| q != self.port));
    }
}

/// A received mbuf as the owner of a [`Bytes`]: returns to its pool when dropped.
struct RxMbuf {
    m: NonNull<sys::rte_mbuf>,
    data: *const u8,
    len: usize,
}

// SAFETY: the mbuf is owned by this value alone, its data is not mutated while it
// lives, and it may be freed from any thread (see the module docs: non-lcore threads
// free straight into the pool's thread-safe ring; pools are never freed).
unsafe impl Send for RxMbuf {}

impl AsRef<[u8]> for RxMbuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes of the mbuf's first (only) segment, alive while it is.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for RxMbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; its pool lives as long as the process.
        unsafe { sys::demi_pktmbuf_free(self.m.as_ptr()) };
    }
}

// ---- checksums around the offloads ------------------------------------------------

const ETH_HLEN: usize = 14;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Sum of 16-bit big-endian words (RFC 1071), not folded.
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The IPv4 pseudo-header sum (folded, not complemented) for `l4_len` bytes.
fn pseudo_sum(ip: &[u8], proto: u8, l4_len: usize) -> u16 {
    let acc = sum16(&ip[12..20], 0) + u64::from(proto) + l4_len as u64;
    fold(acc)
}

/// An IPv4 frame's header length, protocol and end of the IP packet, when the frame
/// holds a whole, unfragmented IPv4 packet.
fn ipv4_parts(frame: &[u8]) -> Option<(usize, u8, usize)> {
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if fragmented {
        return None;
    }
    Some((ihl, ip[9], ETH_HLEN + total))
}

/// Prepares an outgoing frame for checksum offload: the IPv4 header checksum
/// zeroed, the TCP/UDP checksum field holding the pseudo-header sum, ICMP's computed
/// here. Returns the mbuf flags and `l3_len`, or `None` (not IPv4: nothing to do;
/// a fragment: every checksum computed here).
fn tx_checksums_prepare(frame: &mut [u8]) -> Option<(u64, u16)> {
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let Some((ihl, proto, end)) = ipv4_parts(frame) else {
        software_checksums(frame);
        return None;
    };
    let l4 = ETH_HLEN + ihl;
    frame[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
    let mut ol = flags::TX_IPV4 | flags::TX_IP_CKSUM;
    let l4_len = end - l4;
    match proto {
        PROTO_TCP if l4_len >= 20 => {
            let p = pseudo_sum(&frame[ETH_HLEN..], proto, l4_len);
            frame[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
            ol |= flags::TX_TCP_CKSUM;
        }
        PROTO_UDP if l4_len >= 8 => {
            let p = pseudo_sum(&frame[ETH_HLEN..], proto, l4_len);
            frame[l4 + 6..l4 + 8].copy_from_slice(&p.to_be_bytes());
            ol |= flags::TX_UDP_CKSUM;
        }
        PROTO_ICMP if l4_len >= 4 => {
            frame[l4 + 2..l4 + 4].fill(0);
            let c = !fold(sum16(&frame[l4..end], 0));
            frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
    Some((ol, ihl as u16))
}

/// Fills an IPv4 frame's header checksum (and nothing else: fragments carry their
/// transport checksum from the stack, which computes it over the whole datagram only
/// when the device does not offload; demi's stack does not fragment).
fn software_checksums(frame: &mut [u8]) {
    if frame.len() < ETH_HLEN + 20 {
        return;
    }
    let ihl = usize::from(frame[ETH_HLEN] & 0x0f) * 4;
    if ihl < 20 || frame.len() < ETH_HLEN + ihl {
        return;
    }
    frame[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
    let c = !fold(sum16(&frame[ETH_HLEN..ETH_HLEN + ihl], 0));
    frame[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
}

/// Whether a received frame's checksums are right, as far as the stack will rely on
/// it: the port's verdicts where it gave them, software where it did not.
fn rx_checksums_ok(frame: &[u8], ol: u64) -> bool {
    let ip_flag = ol & flags::RX_IP_CKSUM_MASK;
    let l4_flag = ol & flags::RX_L4_CKSUM_MASK;
    if ip_flag == flags::RX_IP_CKSUM_BAD || l4_flag == flags::RX_L4_CKSUM_BAD {
        return false;
    }
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != [0x08, 0x00] {
        return true; // not IPv4 (ARP): no checksum to check
    }
    let ip = &frame[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip_flag != flags::RX_IP_CKSUM_GOOD && (ihl < 20 || ip.len() < ihl || fold(sum16(&ip[..ihl], 0)) != 0xffff) {
        return false;
    }
    let Some((ihl, proto, end)) = ipv4_parts(frame) else {
        return true; // a fragment or malformed: the stack drops what it cannot use
    };
    let l4 = &frame[ETH_HLEN + ihl..end];
    match proto {
        PROTO_TCP | PROTO_UDP if l4_flag != flags::RX_L4_CKSUM_GOOD => {
            if proto == PROTO_UDP && l4.len() >= 8 && l4[6..8] == [0, 0] {
                return true; // UDP without a checksum
            }
            let acc = sum16(l4, u64::from(pseudo_sum(&frame[ETH_HLEN..], proto, l4.len())));
            fold(acc) == 0xffff
        }
        PROTO_ICMP => fold(sum16(l4, 0)) == 0xffff,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + `proto` frame with `payload`, all checksums right.
    fn frame(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let total = (20 + l4.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = !fold(sum16(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        let l4_at = 34;
        let ck_at = match proto {
            PROTO_TCP => Some(16),
            PROTO_UDP => Some(6),
            PROTO_ICMP => Some(2),
            _ => None,
        };
        if let Some(at) = ck_at {
            f[l4_at + at..l4_at + at + 2].fill(0);
            let seed = if proto == PROTO_ICMP { 0 } else { u64::from(pseudo_sum(&f[14..], proto, l4.len())) };
            let c = !fold(sum16(&f[l4_at..], seed));
            f[l4_at + at..l4_at + at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    #[test]
    fn software_verification_accepts_good_frames_and_rejects_corrupt_ones() {
        for (proto, len) in [(PROTO_TCP, 33), (PROTO_UDP, 8 + 5), (PROTO_ICMP, 8 + 56)] {
            let mut f = frame(proto, &vec![0x5a; len]);
            assert!(rx_checksums_ok(&f, 0), "proto {proto}");
            let last = f.len() - 1;
            f[last] ^= 1;
            assert!(!rx_checksums_ok(&f, 0), "proto {proto} corrupt");
            // The port's verdicts win where given.
            assert!(rx_checksums_ok(&f, flags::RX_IP_CKSUM_GOOD | flags::RX_L4_CKSUM_GOOD) || proto == PROTO_ICMP);
        }
        let good = frame(PROTO_TCP, &[0; 20]);
        assert!(!rx_checksums_ok(&good, flags::RX_L4_CKSUM_BAD));
        assert!(rx_checksums_ok(&[0u8; 42], 0), "not IPv4: nothing to check");
    }

    #[test]
    fn tx_preparation_leaves_pseudo_sums_that_complete_to_the_right_checksums() {
        for (proto, at, len) in [(PROTO_TCP, 16, 40), (PROTO_UDP, 6, 20)] {
            let want = frame(proto, &vec![7; len]);
            let mut f = want.clone();
            f[24..26].fill(0xee); // the stack left garbage: the port fills it
            let (ol, l3) = tx_checksums_prepare(&mut f).unwrap();
            assert_eq!(l3, 20);
            assert_ne!(ol & flags::TX_IP_CKSUM, 0);
            assert_eq!(&f[24..26], &[0, 0]);
            // What the port does: sum over the L4 bytes starting from the pseudo sum.
            let ck = 34 + at;
            let c = !fold(sum16(&f[34..], 0));
            f[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
            assert_eq!(&f[ck..ck + 2], &want[ck..ck + 2], "proto {proto}");
        }
        let want = frame(PROTO_ICMP, &[8, 0, 0, 0, 1, 2, 3, 4, 5]);
        let mut f = want.clone();
        f[36..38].fill(0);
        let (ol, _) = tx_checksums_prepare(&mut f).unwrap();
        assert_eq!(ol & flags::TX_UDP_CKSUM, 0, "no L4 offload for ICMP");
        assert_eq!(&f[34..], &want[34..], "ICMP checksum computed in software");
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(DpdkError::NoPorts.to_string().contains("--vdev"));
        let e = DpdkError::EalAlreadyInitialized { running: vec!["-l".into(), "0".into()], wanted: vec!["-l".into(), "1".into()] };
        assert!(e.to_string().contains("same EAL arguments"));
        assert_eq!(DpdkConfig::parse_eal_args(" -l 0  --no-huge "), vec!["-l", "0", "--no-huge"]);
    }
}
