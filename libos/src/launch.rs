//! What `#[demi::main]` and `#[demi::test]` expand to: build a runtime with the
//! attribute's settings, choose the thread's default libOS, and run the body.
//!
//! Precedence for the libOS: `DEMI_LIBOS` if set, else the attribute's `libos`, else
//! `posix`. The same for the idle policy with `DEMI_IDLE` and `idle`.

use crate::config::{parse_idle, Config, ConfigError, LibOsKind};
use crate::LibOs;
use demi_runtime::{Builder, Runtime};
use std::future::Future;

/// The options an attribute passes (see the `demi-macros` crate).
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    /// Default libOS name.
    pub libos: Option<&'static str>,
    /// Idle policy name: `auto`, `spin`, `park`.
    pub idle: Option<&'static str>,
    /// Tasks per batch.
    pub event_interval: Option<u32>,
    /// Start with the clock paused (tests).
    pub start_paused: bool,
}

fn prepare(opts: &LaunchOptions) -> Result<(Runtime, Config), ConfigError> {
    let mut config = Config::new(match opts.libos {
        Some(name) => LibOsKind::parse(name)?,
        None => LibOsKind::Posix,
    });
    if let Some(idle) = opts.idle {
        config.idle = parse_idle(idle)?;
    }
    let config = config.with_env()?;
    let mut builder: Builder = config.runtime_builder().start_paused(opts.start_paused);
    if let Some(n) = opts.event_interval {
        builder = builder.event_interval(n);
    }
    let rt = builder.build().map_err(ConfigError::Io)?;
    Ok((rt, config))
}

fn run<F: Future>(rt: Runtime, config: Config, fut: F) -> F::Output {
    LibOs::set_default_config(config);
    let out = rt.block_on(fut);
    crate::forget_current(rt.handle());
    out
}

/// Runs a program's main future. A configuration error is printed and the process
/// exits with status 2.
pub fn run_main<F: Future>(opts: LaunchOptions, fut: F) -> F::Output {
    match prepare(&opts) {
        Ok((rt, config)) => run(rt, config, fut),
        Err(e) => {
            eprintln!("demi: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs a test's future. A configuration error fails the test.
pub fn run_test<F: Future>(opts: LaunchOptions, fut: F) -> F::Output {
    match prepare(&opts) {
        Ok((rt, config)) => run(rt, config, fut),
        Err(e) => panic!("demi: {e}"),
    }
}
