//! Turning an `async fn` plus validated options into the synchronous
//! wrapper that hands the body to the runtime.
//!
//! Error policy (the macros never panic):
//!
//! * If the item is not a function at all, or the function's *signature*
//!   cannot be wrapped (not `async`, has parameters or generics, carries a
//!   second test attribute), the item is emitted unchanged next to the
//!   `compile_error!`s, so IDEs keep seeing it.
//! * If only the *options* are wrong, the function is still expanded — with
//!   every option that did validate, defaults for the rest — and the errors
//!   are emitted next to it. The expansion is the closest thing to what the
//!   user meant, and it does not add follow-up errors such as "`main` is not
//!   allowed to be `async`".

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens as _};
use syn::{AttrStyle, Attribute, Item, ItemFn};

use crate::options::{parse_options, Errors, Flavor, Options};

/// Expansion of `#[demi::main(attr)] item`.
pub(crate) fn expand_main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Flavor::Main, attr, item)
}

/// Expansion of `#[demi::test(attr)] item`.
pub(crate) fn expand_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Flavor::Test, attr, item)
}

fn expand(flavor: Flavor, attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            let err = syn::Error::new(
                item_span(&other),
                format!(
                    "`{}` can only be applied to an `async fn`",
                    flavor.attr_name()
                ),
            );
            return with_error(item, err);
        }
        Err(err) => return with_error(item, err),
    };

    let (opts, opt_result) = parse_options(flavor, attr);

    let mut errors = Errors::default();
    let sig_ok = check_signature(flavor, &func, &mut errors);
    if let Err(e) = opt_result {
        errors.push(e);
    }
    let errors = errors.into_result().err();

    let output = if sig_ok {
        wrap(flavor, func, &opts)
    } else {
        item
    };
    match errors {
        Some(err) => with_error(output, err),
        None => output,
    }
}

/// `tokens` followed by the error as `compile_error!` invocations.
fn with_error(mut tokens: TokenStream, err: syn::Error) -> TokenStream {
    tokens.extend(err.into_compile_error());
    tokens
}

/// A span covering the start of an item, used when the attribute was put on
/// something that is not a function.
fn item_span(item: &Item) -> Span {
    // Point at the item's keyword and name rather than at its whole body.
    item.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Reports every signature problem; returns whether the function can be
/// wrapped (no signature problems were found).
fn check_signature(flavor: Flavor, func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let mut ok = true;
    let what = match flavor {
        Flavor::Main => "the main function",
        Flavor::Test => "a test function",
    };

    if sig.asyncness.is_none() {
        ok = false;
        let fn_token = &sig.fn_token;
        let ident = &sig.ident;
        errors.push(syn::Error::new_spanned(
            quote!(#fn_token #ident),
            format!(
                "the `async` keyword is missing from the function declaration: `{}` needs `async fn {}`",
                flavor.attr_name(),
                sig.ident
            ),
        ));
    }
    if !sig.inputs.is_empty() || sig.variadic.is_some() {
        ok = false;
        let inputs = &sig.inputs;
        let variadic = &sig.variadic;
        errors.push(syn::Error::new_spanned(
            quote!(#inputs #variadic),
            format!("{what} cannot accept arguments"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        ok = false;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        errors.push(syn::Error::new_spanned(
            quote!(#generics #where_clause),
            format!("{what} cannot have generic parameters"),
        ));
    }
    if flavor == Flavor::Test {
        for attr in &func.attrs {
            if is_test_attr(attr) {
                ok = false;
                errors.push(syn::Error::new_spanned(
                    attr,
                    "a second test attribute is supplied; `#[demi::test]` already marks the function as a test, remove this one",
                ));
            }
        }
    }
    ok
}

/// `#[test]`, `#[core::prelude::v1::test]`, `#[tokio::test]`, another
/// `#[demi::test]`, ... — anything whose last path segment is `test`.
fn is_test_attr(attr: &Attribute) -> bool {
    matches!(attr.style, AttrStyle::Outer)
        && attr
            .path()
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "test")
}

/// `::core::option::Option::Some(value)` or `::core::option::Option::None`.
fn opt_tokens<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// The `LaunchOptions { .. }` struct literal.
fn launch_options(opts: &Options) -> TokenStream {
    let krate = &opts.krate;
    let libos = opt_tokens(opts.libos.as_deref());
    let idle = opt_tokens(opts.idle.as_deref());
    let event_interval = opt_tokens(opts.event_interval.map(Literal::u32_suffixed));
    let start_paused = opts.start_paused;
    quote! {
        #krate::__private::LaunchOptions {
            libos: #libos,
            idle: #idle,
            event_interval: #event_interval,
            start_paused: #start_paused,
        }
    }
}

/// Builds the synchronous wrapper around the (already checked) async fn.
fn wrap(flavor: Flavor, func: ItemFn, opts: &Options) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;

    // syn keeps inner attributes (`#![allow(..)]` written at the top of the
    // body) in `attrs`; they must stay inside the generated body.
    let (outer, inner): (Vec<Attribute>, Vec<Attribute>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Outer));

    sig.asyncness = None;

    // The runtime paths keep the call-site span (the attribute itself), so a
    // missing or misnamed facade crate is reported on `#[demi::main]`.
    let krate = &opts.krate;
    let options = launch_options(opts);
    let runner = match flavor {
        Flavor::Main => quote!(#krate::__private::run_main),
        Flavor::Test => quote!(#krate::__private::run_test),
    };
    let test_attr = match flavor {
        Flavor::Main => TokenStream::new(),
        Flavor::Test => quote!(#[::core::prelude::v1::test]),
    };
    let stmts = &block.stmts;
    let body = quote_spanned!(block.brace_token.span.join()=> async move { #(#stmts)* });

    quote! {
        #test_attr
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #runner(#options, #body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// Token streams print with spaces between tokens; drop all whitespace
    /// so that expectations can be written naturally.
    fn squash(s: impl ToString) -> String {
        s.to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    }

    fn assert_contains(haystack: &TokenStream, needle: TokenStream) {
        let (h, n) = (squash(haystack), squash(needle));
        assert!(h.contains(&n), "expected\n  {n}\nin\n  {h}");
    }

    fn assert_not_contains(haystack: &TokenStream, needle: &str) {
        let h = squash(haystack);
        let n = squash(needle);
        assert!(!h.contains(&n), "did not expect\n  {n}\nin\n  {h}");
    }

    /// The messages of all `compile_error!`s in an expansion.
    fn compile_errors(ts: &TokenStream) -> Vec<String> {
        use proc_macro2::TokenTree;
        let tokens: Vec<TokenTree> = ts.clone().into_iter().collect();
        let mut out = Vec::new();
        for w in tokens.windows(3) {
            if let (TokenTree::Ident(id), TokenTree::Punct(p), TokenTree::Group(g)) =
                (&w[0], &w[1], &w[2])
            {
                if id == "compile_error" && p.as_char() == '!' {
                    let lit: syn::LitStr =
                        syn::parse2(g.stream()).expect("compile_error! takes a string");
                    out.push(lit.value());
                }
            }
        }
        out
    }

    fn no_errors(ts: &TokenStream) {
        let e = compile_errors(ts);
        assert!(e.is_empty(), "unexpected errors: {e:?}");
    }

    #[test]
    fn main_default_expansion_exact() {
        let out = expand_main(
            quote!(),
            quote!(
                async fn main() {
                    println!("hi");
                }
            ),
        );
        let expected = quote! {
            fn main() {
                ::demi::__private::run_main(
                    ::demi::__private::LaunchOptions {
                        libos: ::core::option::Option::None,
                        idle: ::core::option::Option::None,
                        event_interval: ::core::option::Option::None,
                        start_paused: false,
                    },
                    async move { println!("hi"); }
                )
            }
        };
        assert_eq!(squash(&out), squash(&expected));
    }

    #[test]
    fn main_with_options() {
        let out = expand_main(
            quote!(libos = "posix", idle = "spin", event_interval = 31),
            quote!(
                async fn main() {}
            ),
        );
        no_errors(&out);
        assert_contains(
            &out,
            quote! {
                ::demi::__private::LaunchOptions {
                    libos: ::core::option::Option::Some("posix"),
                    idle: ::core::option::Option::Some("spin"),
                    event_interval: ::core::option::Option::Some(31u32),
                    start_paused: false,
                }
            },
        );
        assert_contains(&out, quote!(::demi::__private::run_main));
        assert_not_contains(&out, "async fn");
    }

    #[test]
    fn main_keeps_attrs_vis_and_return_type() {
        let out = expand_main(
            quote!(),
            quote! {
                /// Docs.
                #[allow(unused_variables)]
                pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
                    #![allow(unused_mut)]
                    let mut x = 1;
                    Ok(())
                }
            },
        );
        no_errors(&out);
        let s = squash(&out);
        let prefix = squash(
            r#"#[doc = r" Docs."]
            #[allow(unused_variables)]
            pub fn main() -> Result<(), Box<dyn std::error::Error>> {
                #![allow(unused_mut)]
                ::demi::__private::run_main("#,
        );
        assert!(s.starts_with(&prefix), "{s}");
        assert_contains(
            &out,
            quote!(async move {
                let mut x = 1;
                Ok(())
            }),
        );
    }

    #[test]
    fn main_crate_rename() {
        let out = expand_main(
            quote!(crate = "::facade::rt"),
            quote!(
                async fn main() {}
            ),
        );
        no_errors(&out);
        let s = squash(&out);
        assert!(
            s.contains("::facade::rt::__private::run_main(::facade::rt::__private::LaunchOptions{"),
            "{s}"
        );
        assert_not_contains(&out, "::demi::");

        let out = expand_main(
            quote!(crate = "crate"),
            quote!(
                async fn main() {}
            ),
        );
        no_errors(&out);
        let s = squash(&out);
        assert!(
            s.starts_with("fnmain(){crate::__private::run_main(crate::__private::LaunchOptions{"),
            "{s}"
        );
    }

    #[test]
    fn test_default_expansion_exact() {
        let out = expand_test(
            quote!(),
            quote!(
                async fn works() {
                    assert!(true);
                }
            ),
        );
        let expected = quote! {
            #[::core::prelude::v1::test]
            fn works() {
                ::demi::__private::run_test(
                    ::demi::__private::LaunchOptions {
                        libos: ::core::option::Option::None,
                        idle: ::core::option::Option::None,
                        event_interval: ::core::option::Option::None,
                        start_paused: false,
                    },
                    async move { assert!(true); }
                )
            }
        };
        assert_eq!(squash(&out), squash(&expected));
    }

    #[test]
    fn test_with_options_and_extra_attrs() {
        let out = expand_test(
            quote!(
                start_paused = true,
                libos = "posix",
                idle = "park",
                event_interval = 8
            ),
            quote! {
                #[ignore]
                #[should_panic(expected = "boom")]
                async fn fails() -> Result<(), String> { panic!("boom") }
            },
        );
        no_errors(&out);
        assert!(squash(&out).starts_with(&squash(quote! {
            #[::core::prelude::v1::test]
            #[ignore]
            #[should_panic(expected = "boom")]
            fn fails() -> Result<(), String> {
                ::demi::__private::run_test(
                    ::demi::__private::LaunchOptions {
                        libos: ::core::option::Option::Some("posix"),
                        idle: ::core::option::Option::Some("park"),
                        event_interval: ::core::option::Option::Some(8u32),
                        start_paused: true,
                    },
                    async move { panic!("boom") }
                )
            }
        })));
    }

    #[test]
    fn non_async_fn_is_rejected_and_kept() {
        for (out, attr) in [
            (
                expand_main(
                    quote!(),
                    quote!(
                        fn main() {}
                    ),
                ),
                "#[demi::main]",
            ),
            (
                expand_test(
                    quote!(),
                    quote!(
                        fn t() {}
                    ),
                ),
                "#[demi::test]",
            ),
        ] {
            let e = compile_errors(&out);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("the `async` keyword is missing from the function declaration"),
                "{e:?}"
            );
            assert!(e[0].contains(attr), "{e:?}");
            // The original item is still there, untouched.
            assert!(squash(&out).starts_with("fn"), "{out}");
            assert_not_contains(&out, "run_");
        }
    }

    #[test]
    fn main_with_parameters_or_generics() {
        let out = expand_main(
            quote!(),
            quote!(
                async fn main(args: Vec<String>) {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["the main function cannot accept arguments"]
        );
        assert!(squash(&out).starts_with(&squash(quote!(
            async fn main(args: Vec<String>) {}
        ))));

        let out = expand_main(
            quote!(),
            quote!(
                async fn main<T>() {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["the main function cannot have generic parameters"]
        );

        let out = expand_main(
            quote!(),
            quote!(
                async fn main()
                where
                    u8: Copy,
                {
                }
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["the main function cannot have generic parameters"]
        );
    }

    #[test]
    fn test_with_parameters_or_generics() {
        let out = expand_test(
            quote!(),
            quote!(
                async fn t(x: u32) {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["a test function cannot accept arguments"]
        );
        let out = expand_test(
            quote!(),
            quote!(
                async fn t<const N: usize>() {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["a test function cannot have generic parameters"]
        );
    }

    #[test]
    fn test_with_second_test_attribute() {
        for extra in [
            quote!(#[test]),
            quote!(#[tokio::test]),
            quote!(#[::core::prelude::v1::test]),
        ] {
            let out = expand_test(quote!(), quote!(#extra async fn t() {}));
            let e = compile_errors(&out);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("a second test attribute is supplied"),
                "{e:?}"
            );
        }
        // `#[test_case]`-like attributes that are not `test` are left alone.
        let out = expand_test(
            quote!(),
            quote!(
                #[my::testing]
                async fn t() {}
            ),
        );
        no_errors(&out);
    }

    #[test]
    fn signature_and_option_errors_are_all_reported() {
        let out = expand_main(
            quote!(idle = "nap", bogus = 1),
            quote!(
                fn main(x: u8) {}
            ),
        );
        let e = compile_errors(&out);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("the `async` keyword is missing"), "{e:?}");
        assert_eq!(e[1], "the main function cannot accept arguments");
        assert!(e[2].starts_with("unknown idle strategy \"nap\""), "{e:?}");
        assert!(e[3].starts_with("unknown option `bogus`"), "{e:?}");
    }

    #[test]
    fn option_errors_still_expand_with_valid_options() {
        let out = expand_main(
            quote!(libos = "posix", start_paused = true),
            quote!(
                async fn main() {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["`start_paused` is only supported by `#[demi::test]`, not by `#[demi::main]`"]
        );
        // Wrapper is still produced (no "main cannot be async" follow-up),
        // with the valid option applied and start_paused left false.
        assert_not_contains(&out, "async fn");
        assert_contains(&out, quote!(libos: ::core::option::Option::Some("posix")));
        assert_contains(&out, quote!(start_paused: false));
    }

    #[test]
    fn option_error_messages_through_expansion() {
        let cases: &[(TokenStream, &str)] = &[
            (quote!(foo = 1), "unknown option `foo` for `#[demi::main]`; valid options are: `libos`, `idle`, `event_interval`, `crate`"),
            (quote!(libos = 5), "`libos` must be a string literal"),
            (quote!(idle = "sleep"), "unknown idle strategy \"sleep\"; expected one of \"auto\", \"spin\", \"park\""),
            (quote!(event_interval = 0), "`event_interval` must be greater than 0"),
            (quote!(event_interval = 5000000000), "does not fit in a `u32`"),
            (quote!(event_interval = "31"), "`event_interval` must be a positive integer literal"),
            (quote!(idle = "spin", idle = "park"), "duplicate option `idle`"),
            (quote!(start_paused = true), "`start_paused` is only supported by `#[demi::test]`"),
        ];
        for (attr, msg) in cases {
            let out = expand_main(
                attr.clone(),
                quote!(
                    async fn main() {}
                ),
            );
            let e = compile_errors(&out);
            assert_eq!(e.len(), 1, "{attr}: {e:?}");
            assert!(e[0].contains(msg), "{attr}: expected {msg:?} in {e:?}");
        }
        let out = expand_test(
            quote!(start_paused = "yes"),
            quote!(
                async fn t() {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["`start_paused` must be a boolean literal: `true` or `false`"]
        );
        let out = expand_test(
            quote!(threads = 2),
            quote!(
                async fn t() {}
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["unknown option `threads` for `#[demi::test]`; valid options are: `libos`, `idle`, `event_interval`, `start_paused`, `crate`"]
        );
    }

    #[test]
    fn not_a_function() {
        let out = expand_main(
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert_eq!(
            compile_errors(&out),
            vec!["`#[demi::main]` can only be applied to an `async fn`"]
        );
        assert!(squash(&out).starts_with("structS;"));

        let out = expand_test(quote!(), quote!(this is not an item));
        assert_eq!(compile_errors(&out).len(), 1);
        assert!(squash(&out).starts_with("thisisnotanitem"));
    }

    #[test]
    fn main_may_have_another_name() {
        let out = expand_main(
            quote!(),
            quote!(
                async fn run() -> u8 {
                    3
                }
            ),
        );
        no_errors(&out);
        assert!(squash(&out).starts_with("fnrun()->u8{::demi::__private::run_main("));
    }
}
