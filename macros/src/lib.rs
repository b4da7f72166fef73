//! Attribute macros that start the demi runtime: [`macro@main`] and
//! [`macro@test`].
//!
//! Do not depend on this crate directly; use the macros through the facade,
//! as `#[demi::main]` and `#[demi::test]`.
//!
//! # Contract with the facade crate
//!
//! The macros expand to plain calls into a hidden module of the facade crate
//! (by default reached as `::demi`; see the `crate` option). That module must
//! provide exactly this:
//!
//! ```ignore
//! #[doc(hidden)]
//! pub mod __private {
//!     pub struct LaunchOptions {
//!         /// Library OS to run on, e.g. "posix" or "memory"; `None` = runtime default.
//!         pub libos: Option<&'static str>,
//!         /// Idle strategy: "auto", "spin" or "park"; `None` = runtime default.
//!         pub idle: Option<&'static str>,
//!         /// Tasks run per batch before the I/O drivers get a turn; never `Some(0)`.
//!         pub event_interval: Option<u32>,
//!         /// Start with the runtime clock paused (only ever `true` for tests).
//!         pub start_paused: bool,
//!     }
//!     pub fn run_main<F: core::future::Future>(opts: LaunchOptions, fut: F) -> F::Output;
//!     pub fn run_test<F: core::future::Future>(opts: LaunchOptions, fut: F) -> F::Output;
//! }
//! ```
//!
//! The macros build `LaunchOptions` with a struct literal naming all four
//! fields, so adding a field to it is a breaking change for this crate.
//! Every value is validated at compile time: `idle` is one of the three
//! known strategies, `event_interval` is a non-zero `u32`, `libos` is a
//! non-empty string. The facade still decides whether a given `libos` name
//! exists on the target.
//!
//! # Expansion
//!
//! ```ignore
//! #[demi::main(libos = "posix", event_interval = 31)]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     serve().await
//! }
//! ```
//!
//! becomes
//!
//! ```ignore
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     ::demi::__private::run_main(
//!         ::demi::__private::LaunchOptions {
//!             libos: ::core::option::Option::Some("posix"),
//!             idle: ::core::option::Option::None,
//!             event_interval: ::core::option::Option::Some(31u32),
//!             start_paused: false,
//!         },
//!         async move { serve().await },
//!     )
//! }
//! ```
//!
//! `#[demi::test]` is the same with `run_test` instead of `run_main`, and
//! `#[::core::prelude::v1::test]` placed before the function's own
//! attributes. Outer attributes (docs, `#[ignore]`, `#[should_panic]`,
//! lints, ...), visibility, name and return type are kept; inner attributes
//! (`#![allow(..)]` at the top of the body) stay at the top of the generated
//! body.
//!
//! # Options
//!
//! | option           | value                                   | `main` | `test` |
//! |------------------|-----------------------------------------|--------|--------|
//! | `libos`          | non-empty string literal                | yes    | yes    |
//! | `idle`           | `"auto"`, `"spin"` or `"park"`          | yes    | yes    |
//! | `event_interval` | integer literal in `1..=u32::MAX`       | yes    | yes    |
//! | `start_paused`   | `true` or `false`                       | no     | yes    |
//! | `crate`          | string literal holding a path           | yes    | yes    |
//!
//! Each option may appear once. `crate` replaces the `::demi` prefix of the
//! generated paths, for crates that re-export the facade under another name
//! (`crate = "::my_app::demi"`), or for code inside the facade crate itself
//! (`crate = "crate"`).
//!
//! # Errors
//!
//! Mistakes are reported as compile errors pointing at the offending token;
//! the macros never panic. All problems found are reported at once. When
//! only the options are wrong, the function is still expanded (with the
//! options that were valid) so that no follow-up errors appear; when the
//! signature itself is wrong (missing `async`, parameters, generics, a
//! second `#[test]`), the function is emitted unchanged next to the errors.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;

mod expand;
mod options;

/// Runs an `async fn main` on the demi runtime.
///
/// The function must be `async` and take no parameters and no generics. Its
/// return type can be anything `main` may return, such as `()` or
/// `Result<(), Box<dyn std::error::Error>>`. Attributes and visibility are
/// kept.
///
/// # Options
///
/// * `libos = "posix"` — the library OS to run on (string literal).
/// * `idle = "auto" | "spin" | "park"` — what the runtime does when no task
///   is ready.
/// * `event_interval = 31` — how many tasks run before the I/O drivers are
///   polled again (integer literal, at least 1, fits in `u32`).
/// * `crate = "path"` — path to the facade crate if it is not `::demi`.
///
/// Options not given are left to the runtime's defaults. `start_paused` is
/// not accepted here; it exists only for [`macro@test`].
///
/// # Examples
///
/// ```ignore
/// #[demi::main]
/// async fn main() {
///     println!("running on demi");
/// }
/// ```
///
/// ```ignore
/// use std::error::Error;
///
/// #[demi::main(libos = "posix", idle = "spin", event_interval = 31)]
/// async fn main() -> Result<(), Box<dyn Error>> {
///     let addr = "127.0.0.1:7000".parse()?;
///     echo_server(addr).await?;
///     Ok(())
/// }
/// ```
///
/// The generated code is a synchronous `fn main()` with the same return type
/// whose body is
/// `::demi::__private::run_main(::demi::__private::LaunchOptions { .. }, async move { /* your body */ })`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand_main(attr.into(), item.into()).into()
}

/// Runs an `async fn` as a `#[test]` on a fresh demi runtime.
///
/// The function must be `async` and take no parameters and no generics; it
/// may return `()` or a `Result`. Other attributes such as `#[ignore]` or
/// `#[should_panic]` are kept. Do not add `#[test]` yourself: this attribute
/// already does, and a second one is reported as an error.
///
/// # Options
///
/// * `start_paused = true` — start with the runtime clock paused, so that
///   timers advance only when the test lets time move (boolean literal).
/// * `libos = "memory"` — the library OS to run on (string literal).
/// * `idle = "auto" | "spin" | "park"` — what the runtime does when no task
///   is ready.
/// * `event_interval = 8` — how many tasks run before the I/O drivers are
///   polled again (integer literal, at least 1, fits in `u32`).
/// * `crate = "path"` — path to the facade crate if it is not `::demi`;
///   `crate = "crate"` for unit tests inside the facade crate itself.
///
/// # Examples
///
/// ```ignore
/// #[demi::test]
/// async fn adds() {
///     assert_eq!(async { 2 + 2 }.await, 4);
/// }
///
/// #[demi::test(start_paused = true, libos = "memory", idle = "park", event_interval = 8)]
/// #[should_panic(expected = "boom")]
/// async fn panics() {
///     panic!("boom");
/// }
///
/// #[demi::test]
/// async fn may_fail() -> Result<(), String> {
///     Ok(())
/// }
/// ```
///
/// The generated code is
/// `#[::core::prelude::v1::test] fn name() -> Ret { ::demi::__private::run_test(::demi::__private::LaunchOptions { .. }, async move { /* your body */ }) }`.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand_test(attr.into(), item.into()).into()
}
