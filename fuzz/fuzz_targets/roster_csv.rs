//! The roster CSV import: any upload is rows with per-row errors or one clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use dangjian::members::rules::{csv_rows, validate_row};

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = csv_rows(data) else {
        return;
    };
    let mut errors = Vec::new();
    for (n, raw) in rows.iter().enumerate() {
        let before = errors.len();
        let row = validate_row(n + 1, raw, &mut errors);
        // A row is either valid or has at least one error, never neither.
        assert!(row.is_some() || errors.len() > before);
    }
});
