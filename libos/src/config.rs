//! Choosing and configuring a libOS: in code with [`Config`], overridable by
//! environment variables.
//!
//! | variable | meaning |
//! |---|---|
//! | `DEMI_LIBOS` | which libOS: `posix` |
//! | `DEMI_IDLE` | what the loop does when idle: `auto`, `spin`, `park` |

use crate::framing::FrameLimits;
use demi_runtime::{Builder, IdlePolicy};
use std::fmt;

/// The libOSes demi can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LibOsKind {
    /// The kernel's TCP and UDP sockets (epoll), the portable fallback.
    Posix,
}

impl LibOsKind {
    /// Every kind, in the order they are listed to users.
    pub const ALL: &'static [LibOsKind] = &[LibOsKind::Posix];

    /// The name used on command lines and in `DEMI_LIBOS`.
    pub fn name(self) -> &'static str {
        match self {
            LibOsKind::Posix => "posix",
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
}

impl Config {
    /// Defaults for `libos`.
    pub fn new(libos: LibOsKind) -> Self {
        Config { libos, idle: IdlePolicy::Auto, frame_limits: FrameLimits::default() }
    }

    /// Defaults (POSIX), overridden by the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::new(LibOsKind::Posix).with_env()
    }

    /// Applies `DEMI_LIBOS` and `DEMI_IDLE`, when set, over this configuration.
    pub fn with_env(mut self) -> Result<Self, ConfigError> {
        if let Some(v) = env("DEMI_LIBOS")? {
            self.libos = LibOsKind::parse(&v)?;
        }
        if let Some(v) = env("DEMI_IDLE")? {
            self.idle = parse_idle(&v)?;
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
        assert_eq!(e.to_string(), "unknown libOS `dpdkk`: expected one of posix");
        assert!(parse_idle("sometimes").is_err());
        assert_eq!(parse_idle("Spin").unwrap(), IdlePolicy::Spin);
    }
}
