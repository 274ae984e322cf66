//! The browser tests (`tests/browser/run.sh`: every `tests/browser/*.mjs` in headless Chromium)
//! as part of `cargo test`, against the `dangjian` binary cargo built for this test run (same
//! profile, no second build).
//!
//! Without Chromium or node the test cannot run: it says so loudly and passes — unless
//! `DANGJIAN_CI_REQUIRE_BROWSER=1` (set by `.ci/run`), where a browser test that did not run is
//! a failure.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn browser_tests_pass_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let required = std::env::var("DANGJIAN_CI_REQUIRE_BROWSER").as_deref() == Ok("1");
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some(chromium.as_str()),
        (!have("node")).then_some("node"),
        (!have("npm")).then_some("npm"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        let line = format!(
            "!!! BROWSER TESTS DID NOT RUN: missing {} (apt-get install -y chromium chromium-driver fonts-wqy-microhei nodejs npm)",
            missing.join(", ")
        );
        assert!(
            !required,
            "{line} — DANGJIAN_CI_REQUIRE_BROWSER=1 requires them"
        );
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(std::io::stderr(), "\n{line}\n");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("DANGJIAN_BIN", env!("CARGO_BIN_EXE_dangjian"))
        .env("CHROMIUM", &chromium)
        .status()
        .expect("bash runs tests/browser/run.sh");
    assert!(status.success(), "tests/browser/run.sh failed: {status}");
}
