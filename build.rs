//! Test configuration only: the integration tests generate one test per backend, and the
//! PostgreSQL + Redis ones are `#[ignore]`d (so the summary shows them as ignored, never as passed)
//! unless `DANGJIAN_TEST_DATABASE_URL` is set when they are compiled.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(dangjian_postgres)");
    println!("cargo::rerun-if-env-changed=DANGJIAN_TEST_DATABASE_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("DANGJIAN_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=dangjian_postgres");
    }
}
