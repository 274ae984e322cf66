//! Logging. Secrets and personal data are never fields of a log event.

use tracing_subscriber::{fmt, EnvFilter};

use crate::platform::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("DANGJIAN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colours only for a person at a terminal: never escape codes in a file or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
