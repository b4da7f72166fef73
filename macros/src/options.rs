//! Parsing and validation of the `key = value` list inside
//! `#[demi::main(...)]` and `#[demi::test(...)]`.
//!
//! Parsing happens in two stages:
//!
//! 1. [`parse_raw`] turns the attribute tokens into a list of
//!    `(name, value expression)` pairs. Only *syntax* errors stop this stage.
//! 2. [`Options::from_raw`] checks every pair (known name, no duplicate,
//!    right literal type, value in range) and collects *all* problems into a
//!    single [`syn::Error`], so the user sees every mistake at once. Options
//!    that were valid are still returned, which lets the caller produce a
//!    best-effort expansion next to the errors.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::{Expr, Ident, Lit, Token};

/// Which macro is being expanded. Decides which options are accepted and
/// how messages refer to the attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Main,
    Test,
}

impl Flavor {
    /// The attribute as users write it, for error messages.
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Flavor::Main => "#[demi::main]",
            Flavor::Test => "#[demi::test]",
        }
    }

    /// Option names this flavor understands, in the order they are listed in
    /// error messages.
    pub(crate) fn valid_options(self) -> &'static [&'static str] {
        match self {
            Flavor::Main => &[LIBOS, IDLE, EVENT_INTERVAL, CRATE],
            Flavor::Test => &[LIBOS, IDLE, EVENT_INTERVAL, START_PAUSED, CRATE],
        }
    }
}

pub(crate) const LIBOS: &str = "libos";
pub(crate) const IDLE: &str = "idle";
pub(crate) const EVENT_INTERVAL: &str = "event_interval";
pub(crate) const START_PAUSED: &str = "start_paused";
pub(crate) const CRATE: &str = "crate";

/// Idle strategies the runtime knows about.
pub(crate) const IDLE_STRATEGIES: &[&str] = &["auto", "spin", "park"];

/// One `name = value` pair, before validation.
pub(crate) struct RawOption {
    pub(crate) name: Ident,
    pub(crate) value: Expr,
}

/// Fully validated launch options. Every field that is `None` / `false` is
/// left to the runtime's default.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) libos: Option<String>,
    pub(crate) idle: Option<String>,
    pub(crate) event_interval: Option<u32>,
    pub(crate) start_paused: bool,
    /// Path of the facade crate, `::demi` unless overridden with `crate = "..."`.
    pub(crate) krate: syn::Path,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            libos: None,
            idle: None,
            event_interval: None,
            start_paused: false,
            krate: syn::parse_quote!(::demi),
        }
    }
}

/// Collects errors so that every problem is reported, not just the first.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub(crate) fn spanned(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        match self.0 {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Stage 1: split the attribute arguments into `name = value` pairs.
///
/// Accepts an empty list and a trailing comma. Names may be keywords (needed
/// for `crate`); values are parsed as expressions so that a wrong kind of
/// value (`libos = posix`) gets a targeted message in stage 2 instead of a
/// generic "expected literal".
pub(crate) fn parse_raw(attr: TokenStream) -> syn::Result<Vec<RawOption>> {
    let parser = |input: ParseStream<'_>| -> syn::Result<Vec<RawOption>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let name: Ident = input.call(Ident::parse_any).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected an option name, as in `libos = \"posix\"`",
                )
            })?;
            if !input.peek(Token![=]) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("expected a value for `{name}`: write it as `{name} = <value>`"),
                ));
            }
            input.parse::<Token![=]>()?;
            if input.is_empty() || input.peek(Token![,]) {
                return Err(input.error(format!("missing value after `{name} =`")));
            }
            let value: Expr = input.parse()?;
            out.push(RawOption { name, value });
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error("expected `,` between options"));
            }
            input.parse::<Token![,]>()?;
        }
        Ok(out)
    };
    parser.parse2(attr)
}

/// Looks through invisible groups (left behind by `macro_rules!` forwarding
/// a `$x:literal` or `$x:expr`) and returns the literal, if it is one.
fn as_lit(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(lit) => Some(&lit.lit),
        Expr::Group(group) => as_lit(&group.expr),
        _ => None,
    }
}

impl Options {
    /// Stage 2: validate the raw pairs for `flavor`.
    ///
    /// Always returns the options that were valid; the error, if any, holds
    /// one message per problem found.
    pub(crate) fn from_raw(
        flavor: Flavor,
        raw: Vec<RawOption>,
    ) -> (Options, Result<(), syn::Error>) {
        let mut opts = Options::default();
        let mut errors = Errors::default();
        let mut seen: Vec<String> = Vec::new();

        for RawOption { name, value } in raw {
            let key = name.to_string();

            if !flavor.valid_options().contains(&key.as_str()) {
                if key == START_PAUSED {
                    errors.spanned(
                        name.span(),
                        format!(
                            "`start_paused` is only supported by `#[demi::test]`, not by `{}`",
                            flavor.attr_name()
                        ),
                    );
                } else {
                    let valid = flavor
                        .valid_options()
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    errors.spanned(
                        name.span(),
                        format!(
                            "unknown option `{key}` for `{}`; valid options are: {valid}",
                            flavor.attr_name()
                        ),
                    );
                }
                continue;
            }

            if seen.contains(&key) {
                errors.spanned(
                    name.span(),
                    format!("duplicate option `{key}`: it may be given only once"),
                );
                continue;
            }
            seen.push(key.clone());

            match key.as_str() {
                LIBOS => match parse_libos(&value) {
                    Ok(v) => opts.libos = Some(v),
                    Err(e) => errors.push(e),
                },
                IDLE => match parse_idle(&value) {
                    Ok(v) => opts.idle = Some(v),
                    Err(e) => errors.push(e),
                },
                EVENT_INTERVAL => match parse_event_interval(&value) {
                    Ok(v) => opts.event_interval = Some(v),
                    Err(e) => errors.push(e),
                },
                START_PAUSED => match parse_start_paused(&value) {
                    Ok(v) => opts.start_paused = v,
                    Err(e) => errors.push(e),
                },
                CRATE => match parse_crate_path(&value) {
                    Ok(v) => opts.krate = v,
                    Err(e) => errors.push(e),
                },
                // Every name in `valid_options` has an arm above.
                _ => errors.spanned(name.span(), format!("unhandled option `{key}`")),
            }
        }

        (opts, errors.into_result())
    }
}

/// Parses and validates attribute tokens in one go.
pub(crate) fn parse_options(
    flavor: Flavor,
    attr: TokenStream,
) -> (Options, Result<(), syn::Error>) {
    match parse_raw(attr) {
        Ok(raw) => Options::from_raw(flavor, raw),
        Err(e) => (Options::default(), Err(e)),
    }
}

fn parse_libos(value: &Expr) -> syn::Result<String> {
    match as_lit(value) {
        Some(Lit::Str(s)) => {
            let v = s.value();
            if v.trim().is_empty() {
                Err(syn::Error::new(
                    s.span(),
                    "`libos` must name a library OS, e.g. `libos = \"posix\"`; it cannot be empty",
                ))
            } else {
                Ok(v)
            }
        }
        _ => Err(syn::Error::new_spanned(
            value,
            "`libos` must be a string literal, e.g. `libos = \"posix\"`",
        )),
    }
}

fn idle_choices() -> String {
    IDLE_STRATEGIES
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_idle(value: &Expr) -> syn::Result<String> {
    match as_lit(value) {
        Some(Lit::Str(s)) => {
            let v = s.value();
            if IDLE_STRATEGIES.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(syn::Error::new(
                    s.span(),
                    format!(
                        "unknown idle strategy \"{v}\"; expected one of {}",
                        idle_choices()
                    ),
                ))
            }
        }
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`idle` must be a string literal, one of {}", idle_choices()),
        )),
    }
}

fn parse_event_interval(value: &Expr) -> syn::Result<u32> {
    const EXPECTED: &str =
        "`event_interval` must be a positive integer literal that fits in a `u32`";
    let lit = match as_lit(value) {
        Some(Lit::Int(lit)) => lit,
        _ => {
            // `-3` arrives as a unary minus applied to a literal.
            let negative = matches!(value, Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)));
            let msg = if negative {
                format!("{EXPECTED}; negative values are not allowed")
            } else {
                EXPECTED.to_owned()
            };
            return Err(syn::Error::new_spanned(value, msg));
        }
    };
    let suffix = lit.suffix();
    if !suffix.is_empty() && suffix != "u32" {
        return Err(syn::Error::new(
            lit.span(),
            format!("`event_interval` is a `u32`; remove the `{suffix}` suffix"),
        ));
    }
    // Parse as u128 first so that "too large" and "zero" get distinct messages.
    let wide: u128 = lit
        .base10_parse()
        .map_err(|_| syn::Error::new(lit.span(), format!("{EXPECTED} (at most {})", u32::MAX)))?;
    match u32::try_from(wide) {
        Ok(0) => Err(syn::Error::new(
            lit.span(),
            "`event_interval` must be greater than 0: it is the number of tasks run before I/O drivers are polled",
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(syn::Error::new(
            lit.span(),
            format!("`event_interval` = {wide} does not fit in a `u32` (at most {})", u32::MAX),
        )),
    }
}

fn parse_start_paused(value: &Expr) -> syn::Result<bool> {
    match as_lit(value) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            "`start_paused` must be a boolean literal: `true` or `false`",
        )),
    }
}

fn parse_crate_path(value: &Expr) -> syn::Result<syn::Path> {
    const EXPECTED: &str =
        "`crate` must be a string literal holding a path, e.g. `crate = \"::my_facade::demi\"`";
    match as_lit(value) {
        Some(Lit::Str(s)) => s.parse::<syn::Path>().map_err(|_| {
            syn::Error::new(
                s.span(),
                format!("{EXPECTED}; \"{}\" is not a path", s.value()),
            )
        }),
        _ => Err(syn::Error::new_spanned(value, EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ok(flavor: Flavor, attr: TokenStream) -> Options {
        let (opts, res) = parse_options(flavor, attr);
        if let Err(e) = res {
            panic!("unexpected error: {e}");
        }
        opts
    }

    /// All messages of a failed parse, in order.
    fn errs(flavor: Flavor, attr: TokenStream) -> Vec<String> {
        let (_, res) = parse_options(flavor, attr);
        match res {
            Ok(()) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn path_str(p: &syn::Path) -> String {
        quote!(#p).to_string().replace(' ', "")
    }

    #[test]
    fn empty_gives_defaults() {
        let o = ok(Flavor::Main, quote!());
        assert_eq!(o.libos, None);
        assert_eq!(o.idle, None);
        assert_eq!(o.event_interval, None);
        assert!(!o.start_paused);
        assert_eq!(path_str(&o.krate), "::demi");
    }

    #[test]
    fn all_main_options() {
        let o = ok(
            Flavor::Main,
            quote!(
                libos = "posix",
                idle = "spin",
                event_interval = 31,
                crate = "::facade::demi",
            ),
        );
        assert_eq!(o.libos.as_deref(), Some("posix"));
        assert_eq!(o.idle.as_deref(), Some("spin"));
        assert_eq!(o.event_interval, Some(31));
        assert!(!o.start_paused);
        assert_eq!(path_str(&o.krate), "::facade::demi");
    }

    #[test]
    fn all_test_options() {
        let o = ok(
            Flavor::Test,
            quote!(
                start_paused = true,
                libos = "memory",
                idle = "park",
                event_interval = 7u32
            ),
        );
        assert_eq!(o.libos.as_deref(), Some("memory"));
        assert_eq!(o.idle.as_deref(), Some("park"));
        assert_eq!(o.event_interval, Some(7));
        assert!(o.start_paused);
    }

    #[test]
    fn every_idle_strategy_is_accepted() {
        for s in IDLE_STRATEGIES {
            let o = ok(Flavor::Main, quote!(idle = #s));
            assert_eq!(o.idle.as_deref(), Some(*s));
        }
    }

    #[test]
    fn event_interval_bounds() {
        assert_eq!(
            ok(Flavor::Main, quote!(event_interval = 1)).event_interval,
            Some(1)
        );
        assert_eq!(
            ok(Flavor::Main, quote!(event_interval = 4294967295)).event_interval,
            Some(u32::MAX)
        );
        assert_eq!(
            ok(Flavor::Main, quote!(event_interval = 1_000)).event_interval,
            Some(1000)
        );
        assert_eq!(
            ok(Flavor::Main, quote!(event_interval = 0x10)).event_interval,
            Some(16)
        );

        let e = errs(Flavor::Main, quote!(event_interval = 0));
        assert!(e[0].contains("must be greater than 0"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = 4294967296));
        assert!(e[0].contains("does not fit in a `u32`"), "{e:?}");
        let e = errs(
            Flavor::Main,
            quote!(event_interval = 99999999999999999999999999999999999999999),
        );
        assert!(e[0].contains("positive integer literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = -3));
        assert!(e[0].contains("negative values are not allowed"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = "31"));
        assert!(e[0].contains("positive integer literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = 3.5));
        assert!(e[0].contains("positive integer literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = 31u64));
        assert!(e[0].contains("remove the `u64` suffix"), "{e:?}");
        let e = errs(Flavor::Main, quote!(event_interval = N));
        assert!(e[0].contains("positive integer literal"), "{e:?}");
    }

    #[test]
    fn wrong_literal_types() {
        let e = errs(Flavor::Main, quote!(libos = posix));
        assert!(e[0].contains("`libos` must be a string literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(libos = 3));
        assert!(e[0].contains("`libos` must be a string literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(libos = ""));
        assert!(e[0].contains("cannot be empty"), "{e:?}");
        let e = errs(Flavor::Main, quote!(idle = spin));
        assert!(e[0].contains("`idle` must be a string literal"), "{e:?}");
        let e = errs(Flavor::Test, quote!(start_paused = "yes"));
        assert!(
            e[0].contains("`start_paused` must be a boolean literal"),
            "{e:?}"
        );
        let e = errs(Flavor::Test, quote!(start_paused = 1));
        assert!(
            e[0].contains("`start_paused` must be a boolean literal"),
            "{e:?}"
        );
        let e = errs(Flavor::Main, quote!(crate = demi));
        assert!(e[0].contains("`crate` must be a string literal"), "{e:?}");
        let e = errs(Flavor::Main, quote!(crate = "not a path!"));
        assert!(e[0].contains("is not a path"), "{e:?}");
    }

    #[test]
    fn unknown_idle_strategy() {
        let e = errs(Flavor::Main, quote!(idle = "busy"));
        assert_eq!(
            e,
            vec![
                r#"unknown idle strategy "busy"; expected one of "auto", "spin", "park""#
                    .to_owned()
            ]
        );
    }

    #[test]
    fn unknown_option_lists_valid_ones() {
        let e = errs(Flavor::Main, quote!(worker_threads = 4));
        assert_eq!(
            e,
            vec![
                "unknown option `worker_threads` for `#[demi::main]`; valid options are: \
                  `libos`, `idle`, `event_interval`, `crate`"
                    .to_owned()
            ]
        );
        let e = errs(Flavor::Test, quote!(flavor = "current_thread"));
        assert_eq!(
            e,
            vec![
                "unknown option `flavor` for `#[demi::test]`; valid options are: \
                  `libos`, `idle`, `event_interval`, `start_paused`, `crate`"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn start_paused_rejected_on_main() {
        let e = errs(Flavor::Main, quote!(start_paused = true));
        assert_eq!(
            e,
            vec![
                "`start_paused` is only supported by `#[demi::test]`, not by `#[demi::main]`"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn duplicates_are_rejected_but_first_value_kept() {
        let (o, res) = parse_options(Flavor::Main, quote!(libos = "posix", libos = "memory"));
        let e: Vec<String> = res
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            e,
            vec!["duplicate option `libos`: it may be given only once".to_owned()]
        );
        assert_eq!(o.libos.as_deref(), Some("posix"));
    }

    #[test]
    fn every_problem_is_reported() {
        let (o, res) = parse_options(
            Flavor::Main,
            quote!(
                libos = 1,
                idle = "nap",
                bogus = 2,
                event_interval = 0,
                start_paused = true,
                libos = "x"
            ),
        );
        let e: Vec<String> = res
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(e.len(), 6, "{e:?}");
        // Nothing valid was given, so nothing leaks into the options.
        assert_eq!(o.libos, None);
        assert_eq!(o.idle, None);
        assert_eq!(o.event_interval, None);
        assert!(!o.start_paused);
        assert_eq!(path_str(&o.krate), "::demi");
    }

    #[test]
    fn valid_options_survive_next_to_errors() {
        let (o, res) = parse_options(Flavor::Main, quote!(libos = "posix", idle = "nap"));
        assert!(res.is_err());
        assert_eq!(o.libos.as_deref(), Some("posix"));
        assert_eq!(o.idle, None);
    }

    #[test]
    fn syntax_errors() {
        let e = errs(Flavor::Test, quote!(start_paused));
        assert!(
            e[0].contains("expected a value for `start_paused`"),
            "{e:?}"
        );
        let e = errs(Flavor::Main, quote!(libos =));
        assert!(e[0].contains("missing value after `libos =`"), "{e:?}");
        let e = errs(Flavor::Main, quote!(libos = , idle = "spin"));
        assert!(e[0].contains("missing value after `libos =`"), "{e:?}");
        let e = errs(Flavor::Main, quote!(libos = "posix" idle = "spin"));
        assert!(e[0].contains("expected `,` between options"), "{e:?}");
        let e = errs(Flavor::Main, quote!("posix"));
        assert!(e[0].contains("expected an option name"), "{e:?}");
    }

    #[test]
    fn literals_inside_invisible_groups_are_accepted() {
        // What `macro_rules!` produces when it forwards `$n:literal`.
        let grouped = proc_macro2::Group::new(proc_macro2::Delimiter::None, quote!(12));
        let o = ok(Flavor::Main, quote!(event_interval = #grouped));
        assert_eq!(o.event_interval, Some(12));
    }
}
