use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dangjian::{
    config::Settings,
    startup::{Application, Overrides, Role},
};

#[derive(Parser)]
#[command(name = "dangjian", version, about = "Party-building platform: WeChat official account, mini-program, console")]
struct Cli {
    /// Optional TOML file layered over the embedded defaults (before the DANGJIAN_* environment).
    #[arg(long, env = "DANGJIAN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and run the background workers (the default).
    Serve {
        /// HTTP only; run `dangjian worker` elsewhere.
        #[arg(long)]
        no_workers: bool,
        /// Don't apply migrations at start-up.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    dangjian::telemetry::init(settings.log_format);
    match cli.command.unwrap_or(Command::Serve { no_workers: false, no_migrate: false }) {
        Command::Serve { no_workers, no_migrate } => {
            let role = if no_workers { Role::HttpOnly } else { Role::All };
            Application::build_with(settings, Overrides::default(), role, !no_migrate).await?.run_until_stopped().await
        }
        Command::Migrate => {
            let db = dangjian::db::Db::connect(&settings.database_url).await?;
            let n = db.migrate().await?;
            println!("{n} migration(s) applied");
            Ok(())
        }
    }
}
