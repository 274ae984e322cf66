//! `#[backend_test]` turns one `async fn name() { ... }` of the integration tests into a module
//! `name` holding one test per backend — `name::sqlite` and `name::postgres` — so the test summary
//! shows what ran where, and a backend that did not run is visible as ignored, never as passed.
//!
//! - Both tests run on tokio's multi-thread runtime with two workers (the CI machine has two
//!   cores), so races between the app's tasks can happen in-process.
//! - The body runs under `crate::helpers::run_on`, which binds `backends()` (and so
//!   `each_backend!`) to that test's backend and puts a deadline on the whole test.
//! - The PostgreSQL + Redis test is `#[ignore]`d unless `DANGJIAN_TEST_DATABASE_URL` was set when
//!   the tests were compiled (`build.rs` sets `cfg(dangjian_postgres)`).
//! - `#[backend_test(postgres)]` generates only the PostgreSQL test, for what exists only in
//!   production (two instances sharing Redis, a PostgreSQL connection cut by a proxy).

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn};

#[proc_macro_attribute]
pub fn backend_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    let args = args.to_string();
    let postgres_only = match args.trim() {
        "" => false,
        "postgres" => true,
        other => {
            return syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("#[backend_test] takes nothing or `postgres`, not `{other}`"),
            )
            .to_compile_error()
            .into()
        }
    };
    if f.sig.asyncness.is_none() || !f.sig.inputs.is_empty() {
        return syn::Error::new_spanned(&f.sig, "#[backend_test] wants `async fn name()`")
            .to_compile_error()
            .into();
    }
    let name = &f.sig.ident;
    let attrs = &f.attrs;
    let body = &f.block;
    let sqlite = (!postgres_only).then(|| {
        quote! {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                crate::helpers::run_on(crate::helpers::On::Sqlite, async move #body).await
            }
        }
    });
    quote! {
        #(#attrs)*
        mod #name {
            #[allow(unused_imports)]
            use super::*;

            #sqlite

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(dangjian_postgres),
                ignore = "PostgreSQL + Redis: DANGJIAN_TEST_DATABASE_URL was not set at build time"
            )]
            async fn postgres() {
                crate::helpers::run_on(crate::helpers::On::Postgres, async move #body).await
            }
        }
    }
    .into()
}
