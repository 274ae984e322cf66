//! Logging. Secrets and personal data are never fields of a log event.

use tracing_subscriber::{filter::Targets, fmt, prelude::*};

use crate::platform::config::LogFormat;

/// What is logged when `DANGJIAN_LOG` is unset (or unreadable).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

pub fn init(format: LogFormat) {
    let filter = filter_from(std::env::var("DANGJIAN_LOG").ok().as_deref());
    // Colours only for a person at a terminal: never escape codes in a file or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let layer = fmt::layer().with_target(false).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry.with(layer.json()).try_init(),
        LogFormat::Text => registry.with(layer).try_init(),
    };
}

/// The log filter: `target=level` pairs and a bare default level, comma-separated
/// (`info,dangjian=debug`). A static filter on purpose: a dynamic one (span-field directives)
/// takes a shared lock on every span entered and left, which every request pays
/// (`bench/README.md`). An unreadable `DANGJIAN_LOG` is reported and the default used.
pub fn filter_from(spec: Option<&str>) -> Targets {
    let default = || DEFAULT_FILTER.parse().expect("the default filter parses");
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => default(),
        Some(s) => s.parse().unwrap_or_else(|e| {
            eprintln!("DANGJIAN_LOG={s:?} is not a log filter ({e}); using {DEFAULT_FILTER:?}");
            default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn the_filter_reads_levels_per_target_and_falls_back_to_the_default() {
        let f = filter_from(Some("warn,dangjian::push=debug"));
        assert!(f.would_enable("dangjian::push::worker", &Level::DEBUG));
        assert!(!f.would_enable("dangjian::push::worker", &Level::TRACE));
        assert!(!f.would_enable("dangjian::http", &Level::INFO));
        assert!(f.would_enable("dangjian::http", &Level::WARN));
        for unset in [None, Some(""), Some("  "), Some("dangjian=loud")] {
            let f = filter_from(unset);
            assert!(f.would_enable("dangjian", &Level::INFO), "{unset:?}");
            assert!(!f.would_enable("dangjian", &Level::DEBUG), "{unset:?}");
            assert!(!f.would_enable("sqlx::query", &Level::INFO), "{unset:?}");
            assert!(f.would_enable("sqlx::query", &Level::WARN), "{unset:?}");
        }
    }
}
