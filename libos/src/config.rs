//! Choosing and configuring a libOS: in code with [`Config`], overridable by
//! environment variables.
//!
//! | variable | meaning |
//! |---|---|
//! | `DEMI_LIBOS` | which libOS: `posix`, `memory` |
//! | `DEMI_IDLE` | what the loop does when idle: `auto`, `spin`, `park` |
//! | `DEMI_IP` | the user-level stack's address, `A.B.C.D/PREFIX` (or without prefix: /24) |
//! | `DEMI_MTU` | the user-level stack's IP MTU |
//! | `DEMI_HOST` | which host of the memory or shm link this libOS is (0, 1, …) |
//! | `DEMI_LINK` | the memory link's name; for `shm`, the shared-memory file (`/dev/shm/demi-NAME`, or a path) |
//! | `DEMI_IFACE` | the interface of the `raw` device, or the one DPDK's tap / af_packet PMD attaches to |
//! | `DEMI_MAC` | the stack's Ethernet address (default: the interface's for `raw`, the port's for `dpdk`) |
//! | `DEMI_DPDK_ARGS` | DPDK EAL arguments, separated by spaces |
//! | `DEMI_BUFFERS` | packet buffers per direction (shm slots, raw ring frames, DPDK mbufs) |
//! | `DEMI_PCAP` | capture every frame the device moves to this pcap file |
//! | `DEMI_FAULTS` | inject faults on the device: `loss=0.05,dup=0.01,reorder=0.01,corrupt=0.001,seed=7` |

use crate::framing::FrameLimits;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::{Builder, IdlePolicy};
use std::fmt;
use std::net::Ipv4Addr;

/// The libOSes demi can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LibOsKind {
    /// The kernel's TCP and UDP sockets (epoll), the portable fallback.
    Posix,
    /// demi's own TCP/IP stack over an in-process memory link: stacks in one
    /// process, each with its own MAC and IP, exchanging frames without copies.
    Memory,
    /// demi's stack over shared-memory rings between two processes
    /// ([`crate::device::shm`]): kernel bypass on any Linux machine, no root.
    Shm,
    /// demi's stack on raw Ethernet through AF_PACKET mmap rings on a named
    /// interface ([`crate::device::raw`]; root, or `CAP_NET_RAW`).
    Raw,
    /// demi's stack on a DPDK poll-mode driver (cargo feature `dpdk`).
    Dpdk,
}

impl LibOsKind {
    /// Every kind, in the order they are listed to users.
    pub const ALL: &'static [LibOsKind] =
        &[LibOsKind::Posix, LibOsKind::Memory, LibOsKind::Shm, LibOsKind::Raw, LibOsKind::Dpdk];

    /// The name used on command lines and in `DEMI_LIBOS`.
    pub fn name(self) -> &'static str {
        match self {
            LibOsKind::Posix => "posix",
            LibOsKind::Memory => "memory",
            LibOsKind::Shm => "shm",
            LibOsKind::Raw => "raw",
            LibOsKind::Dpdk => "dpdk",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn parse(name: &str) -> Result<LibOsKind, ConfigError> {
        let lower = name.trim().to_ascii_lowercase();
        LibOsKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == lower)
            .ok_or_else(|| ConfigError::UnknownLibOs(name.to_string()))
    }
}

impl fmt::Display for LibOsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a libOS could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The libOS name is not one demi knows.
    UnknownLibOs(String),
    /// A setting has a value that cannot be used; the text says which and why.
    Invalid(String),
    /// The operating system refused a resource (epoll, eventfd, …).
    Io(std::io::Error),
    /// The device could not be opened; the text says why and what to do.
    Device(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownLibOs(name) => {
                let names: Vec<_> = LibOsKind::ALL.iter().map(|k| k.name()).collect();
                write!(f, "unknown libOS `{name}`: expected one of {}", names.join(", "))
            }
            ConfigError::Invalid(what) => f.write_str(what),
            ConfigError::Io(e) => write!(f, "cannot set up the runtime: {e}"),
            ConfigError::Device(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// How to build a libOS and, when it makes its own, its runtime.
///
/// ```
/// use demi_libos::{Config, LibOsKind};
/// let cfg = Config::new(LibOsKind::Posix);
/// assert_eq!(cfg.libos, LibOsKind::Posix);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Which libOS.
    pub libos: LibOsKind,
    /// What the loop does when idle (for a runtime the libOS makes itself).
    pub idle: IdlePolicy,
    /// Limits on framed elements.
    pub frame_limits: FrameLimits,
    /// The user-level stack's interface (ignored by the POSIX libOS).
    pub net: NetConfig,
}

/// The user-level stack's interface settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NetConfig {
    /// Name of the link to attach to: the in-process memory link (per thread), or
    /// for `shm` the shared-memory file (`/dev/shm/demi-<link>`, or a path when it
    /// contains a `/`).
    pub link: String,
    /// Which host of the link this is; picks the default address and MAC (and for
    /// `shm`, which side of the link: 0 or 1).
    pub host: u8,
    /// The interface address; default `198.18.0.<host + 1>`.
    pub ip: Option<Ipv4Addr>,
    /// Prefix length of the subnet.
    pub prefix_len: u8,
    /// The Ethernet address; default `02:00:00:00:00:<host + 1>` (locally administered).
    pub mac: Option<EthernetAddress>,
    /// IP MTU.
    pub mtu: usize,
    /// The network interface of the `raw` device (and of DPDK's tap / af_packet
    /// virtual devices when `dpdk_args` names none).
    pub iface: Option<String>,
    /// DPDK EAL arguments (`dpdk` libOS).
    pub dpdk_args: Vec<String>,
    /// Packet buffers per direction: shm ring slots, raw ring frames, DPDK mbufs.
    /// `None`: the device's default.
    pub buffers: Option<usize>,
    /// Write every frame the device moves to this pcap file.
    pub pcap: Option<std::path::PathBuf>,
    /// Inject these faults on the device.
    pub faults: Option<crate::device::faults::FaultConfig>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            link: "default".into(),
            host: 0,
            ip: None,
            prefix_len: 24,
            mac: None,
            mtu: 1500,
            iface: None,
            dpdk_args: Vec::new(),
            buffers: None,
            pcap: None,
            faults: None,
        }
    }
}

impl NetConfig {
    /// The address this host uses.
    pub fn address(&self) -> Ipv4Addr {
        self.ip.unwrap_or(Ipv4Addr::new(198, 18, 0, self.host.saturating_add(1)))
    }

    /// The Ethernet address this host uses.
    pub fn ethernet(&self) -> EthernetAddress {
        self.mac.unwrap_or(EthernetAddress([0x02, 0, 0, 0, 0, self.host.saturating_add(1)]))
    }
}

impl Config {
    /// Defaults for `libos`.
    pub fn new(libos: LibOsKind) -> Self {
        Config { libos, idle: IdlePolicy::Auto, frame_limits: FrameLimits::default(), net: NetConfig::default() }
    }

    /// The memory libOS as host `host` of the default link (host 0 is
    /// 198.18.0.1, host 1 is 198.18.0.2, …).
    pub fn memory(host: u8) -> Self {
        let mut c = Config::new(LibOsKind::Memory);
        c.net.host = host;
        c
    }

    /// Defaults (POSIX), overridden by the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::new(LibOsKind::Posix).with_env()
    }

    /// Applies the `DEMI_*` environment variables that are set (docs/setup.md lists
    /// them) over this configuration.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.apply(env)
    }

    /// Applies one setting as if the environment variable `name` (one of the
    /// `DEMI_*` variables of docs/setup.md) had `value`: how a command line's flags
    /// override the environment.
    pub fn with_var(self, name: &str, value: &str) -> Result<Self, ConfigError> {
        self.apply(|n| Ok((n == name && !value.trim().is_empty()).then(|| value.to_string())))
    }

    fn apply(mut self, env: impl Fn(&str) -> Result<Option<String>, ConfigError>) -> Result<Self, ConfigError> {
        if let Some(v) = env("DEMI_LIBOS")? {
            self.libos = LibOsKind::parse(&v)?;
        }
        if let Some(v) = env("DEMI_IDLE")? {
            self.idle = parse_idle(&v)?;
        }
        if let Some(v) = env("DEMI_IP")? {
            let (ip, prefix) = parse_cidr(&v)?;
            self.net.ip = Some(ip);
            self.net.prefix_len = prefix;
        }
        if let Some(v) = env("DEMI_MTU")? {
            self.net.mtu = v
                .trim()
                .parse()
                .ok()
                .filter(|m| (576..=9000).contains(m))
                .ok_or_else(|| ConfigError::Invalid(format!("DEMI_MTU `{v}`: expected a number from 576 to 9000")))?;
        }
        if let Some(v) = env("DEMI_HOST")? {
            self.net.host =
                v.trim().parse().map_err(|_| ConfigError::Invalid(format!("DEMI_HOST `{v}`: expected 0 to 254")))?;
        }
        if let Some(v) = env("DEMI_LINK")? {
            self.net.link = v.trim().to_string();
        }
        if let Some(v) = env("DEMI_IFACE")? {
            self.net.iface = Some(v.trim().to_string());
        }
        if let Some(v) = env("DEMI_MAC")? {
            self.net.mac = Some(parse_mac(&v)?);
        }
        if let Some(v) = env("DEMI_DPDK_ARGS")? {
            self.net.dpdk_args = v.split_whitespace().map(str::to_string).collect();
        }
        if let Some(v) = env("DEMI_BUFFERS")? {
            self.net.buffers = Some(
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| (64..=1 << 20).contains(n))
                    .ok_or_else(|| ConfigError::Invalid(format!("DEMI_BUFFERS `{v}`: expected 64 to 1048576")))?,
            );
        }
        if let Some(v) = env("DEMI_PCAP")? {
            self.net.pcap = Some(v.trim().into());
        }
        if let Some(v) = env("DEMI_FAULTS")? {
            self.net.faults = Some(crate::device::faults::FaultConfig::parse(&v).map_err(ConfigError::Invalid)?);
        }
        Ok(self)
    }

    /// A runtime builder with this configuration's runtime settings.
    pub fn runtime_builder(&self) -> Builder {
        Builder::new().idle(self.idle)
    }
}

fn env(name: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::Invalid(format!("{name} is not valid UTF-8"))),
    }
}

/// Parses `A.B.C.D/PREFIX` (prefix 24 when absent).
pub(crate) fn parse_cidr(v: &str) -> Result<(Ipv4Addr, u8), ConfigError> {
    let bad = || ConfigError::Invalid(format!("`{v}` is not an IPv4 address with an optional /prefix (e.g. 198.18.0.1/24)"));
    let (ip, prefix) = match v.trim().split_once('/') {
        Some((ip, p)) => (ip, p.parse::<u8>().map_err(|_| bad())?),
        None => (v.trim(), 24),
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    if prefix > 32 || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// Parses an Ethernet address `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(v: &str) -> Result<EthernetAddress, ConfigError> {
    let bad = || ConfigError::Invalid(format!("`{v}` is not an Ethernet address like 02:00:00:00:00:01"));
    let mut mac = [0u8; 6];
    let mut parts = v.trim().split(':');
    for b in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(EthernetAddress(mac))
}

/// Parses an idle policy name: `auto`, `spin` or `park`.
pub(crate) fn parse_idle(v: &str) -> Result<IdlePolicy, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(IdlePolicy::Auto),
        "spin" => Ok(IdlePolicy::Spin),
        "park" => Ok(IdlePolicy::Park),
        other => Err(ConfigError::Invalid(format!("unknown idle policy `{other}`: expected auto, spin or park"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_say_what_is_valid() {
        assert_eq!(LibOsKind::parse("POSIX").unwrap(), LibOsKind::Posix);
        let e = LibOsKind::parse("dpdkk").unwrap_err();
        assert_eq!(e.to_string(), "unknown libOS `dpdkk`: expected one of posix, memory, shm, raw, dpdk");
        assert_eq!(LibOsKind::parse("shm").unwrap(), LibOsKind::Shm);
        assert_eq!(parse_mac("02:0a:00:00:00:ff").unwrap(), EthernetAddress([2, 10, 0, 0, 0, 255]));
        assert!(parse_mac("01:00:00:00:00:01").is_err(), "multicast");
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:00:00").is_err());
        assert!(parse_idle("sometimes").is_err());
        assert_eq!(parse_idle("Spin").unwrap(), IdlePolicy::Spin);
        assert_eq!(parse_cidr("198.18.0.9/16").unwrap(), (Ipv4Addr::new(198, 18, 0, 9), 16));
        assert_eq!(parse_cidr("198.18.0.9").unwrap().1, 24);
        assert!(parse_cidr("198.18.0.9/33").is_err());
        assert!(parse_cidr("nope").is_err());
        assert_eq!(Config::memory(1).net.address(), Ipv4Addr::new(198, 18, 0, 2));
    }
}
