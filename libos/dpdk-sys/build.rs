//! Builds demi's DPDK bindings from the system's DPDK:
//! 1. `pkg-config libdpdk` says where DPDK is and how to link it (shared libraries;
//!    the poll-mode drivers load as plugins at run time);
//! 2. bindgen turns the DPDK headers demi uses into Rust declarations (an allowlist
//!    keeps them to the EAL, ethdev, mempool and mbuf APIs);
//! 3. the C shim (`csrc/shim.c`) is compiled with DPDK's own cflags: it exports the
//!    static-inline fast-path functions (rx/tx burst, mbuf alloc/free, …).
//!
//! Without DPDK the build stops here with a message that says what to install (or,
//! when the `link` feature is off, builds an empty crate: see `fail`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const INSTALL: &str = "apt-get install dpdk-dev libdpdk-dev pkg-config libclang-dev clang";

/// Without DPDK: an error when the `link` feature asks for DPDK, otherwise an empty
/// crate (this crate is a workspace member, built by `cargo test --workspace` on
/// machines that have no DPDK and do not use the `dpdk` feature).
fn fail(what: &str) -> ! {
    if env::var_os("CARGO_FEATURE_LINK").is_none() {
        println!("cargo:rustc-cfg=demi_dpdk_missing");
        std::process::exit(0);
    }
    eprintln!("\nerror: demi-dpdk-sys: {what}\n");
    eprintln!("demi's `dpdk` feature needs DPDK 22.11 (with its pkg-config file), pkg-config and libclang.");
    eprintln!("On Debian/Ubuntu, as root:\n\n    {INSTALL}\n");
    eprintln!("(or build without `--features dpdk`). See docs/setup.md (section dpdk).\n");
    println!("cargo:warning=demi-dpdk-sys: {what}; install DPDK: {INSTALL}");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(demi_dpdk_missing)");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR", "LIBCLANG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let cflags = match Command::new(&pkg_config).args(["--cflags", "libdpdk"]).output() {
        Err(e) => fail(&format!("cannot run `{pkg_config}` ({e}): pkg-config is not installed")),
        Ok(out) if !out.status.success() => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
            fail("pkg-config cannot find libdpdk: DPDK's development files are not installed")
        }
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    // Keep every flag: they carry `-include rte_config.h` (the build configuration the
    // headers assume) and the `-march` DPDK was built for.
    let cflags: Vec<String> = cflags.split_whitespace().map(str::to_string).collect();

    let lib = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => fail(&format!("libdpdk is unusable: {e}")),
    };
    // The ring PMD is a plugin EAL loads at run time; `rte_eth_from_rings` (two ports
    // joined back to back in memory) is called directly, so link it too.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    if !lib.version.starts_with("22.11") {
        println!("cargo:warning=demi-dpdk-sys: built against DPDK {} (tested with 22.11)", lib.version);
    }

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c").include("csrc").warnings(true).opt_level(3);
    for flag in &cflags {
        shim.flag(flag);
    }
    if let Err(e) = shim.try_compile("demi_dpdk_shim") {
        fail(&format!("cannot compile the C shim against DPDK's headers ({e}); is a C compiler installed?"));
    }

    // bindgen panics when it cannot load libclang: turn that into the same message.
    let generated = std::panic::catch_unwind(|| generate(&cflags));
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => fail(&format!("bindgen could not read the DPDK headers ({e})")),
        Err(_) => fail("bindgen could not load libclang (libclang-dev is not installed?)"),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}

/// The bindings: an allowlist of the EAL, ethdev, mempool and mbuf APIs and the shim.
fn generate(cflags: &[String]) -> Result<bindgen::Bindings, bindgen::BindgenError> {
    bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(cflags)
        .clang_arg("-Icsrc")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_mbuf_.*")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_strerror")
        .allowlist_function("demi_.*")
        .allowlist_function("rte_ring_create")
        .allowlist_function("rte_ring_free")
        .allowlist_type("rte_eth_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RTE_ETH_.*")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MBUF_.*")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_ETHER_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("E_RTE_.*")
        // Static-inline functions have no symbols: the shim wraps the ones demi needs.
        .generate_inline_functions(false)
        .layout_tests(false)
        .derive_default(true)
        .prepend_enum_name(false)
        .generate()
}
