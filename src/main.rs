use std::path::PathBuf;

/// mimalloc instead of the system allocator: a webhook message allocates many small strings
/// (XML, base64, the reply), and the system allocator was a sixth of the CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use dangjian::{
    platform::config::Settings,
    startup::{Application, Overrides, Role},
};

#[derive(Parser)]
#[command(
    name = "dangjian",
    version,
    about = "Party-building platform: WeChat official account, mini-program, console"
)]
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
    /// Run only the background workers (push senders, scheduler, syncs): scale them apart from HTTP.
    Worker {
        /// Don't apply migrations at start-up.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// WeChat housekeeping.
    #[command(subcommand)]
    Wechat(WechatCommand),
    /// Developer tools (work against a running server).
    #[command(subcommand)]
    Dev(DevCommand),
    /// Admin accounts and the personal-data key: create | reset-password | disable | rotate-key.
    #[command(subcommand)]
    Admin(dangjian::auth::cli::AdminCommand),
}

#[derive(Subcommand)]
enum WechatCommand {
    /// Push content/menu.toml to WeChat (menu/create), after checking WeChat's limits.
    SyncMenu,
    /// Page through the follower list, upsert followers and tags, mark the gone (resumable).
    SyncFollowers,
}

#[derive(Subcommand)]
enum DevCommand {
    /// Send a correctly signed (and, unless plaintext mode, encrypted) text message to the
    /// running server at DANGJIAN_PUBLIC_URL, as a follower would; prints the reply.
    SendMessage {
        /// Who sends it (an openid).
        #[arg(long, default_value = "o_dev_follower")]
        from: String,
        /// The text: the rest of the line, e.g. `帮助` or `投稿 我的心得`.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    dangjian::platform::telemetry::init(settings.log_format);
    match cli.command.unwrap_or(Command::Serve {
        no_workers: false,
        no_migrate: false,
    }) {
        Command::Serve {
            no_workers,
            no_migrate,
        } => {
            let role = if no_workers {
                Role::HttpOnly
            } else {
                Role::All
            };
            Application::build_with(settings, Overrides::default(), role, !no_migrate)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Wechat(cmd) => {
            let state =
                dangjian::startup::build_state(settings, Overrides::default(), true).await?;
            match cmd {
                WechatCommand::SyncMenu => {
                    let n = dangjian::official_account::service::sync_menu(&state).await?;
                    println!("menu synced: {n} buttons");
                }
                WechatCommand::SyncFollowers => {
                    let report =
                        dangjian::official_account::service::sync_followers(&state, None).await?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
            }
            Ok(())
        }
        Command::Dev(DevCommand::SendMessage { text, from }) => {
            println!(
                "{}",
                dangjian::official_account::dev::send_text(&settings, &from, &text.join(" "))
                    .await?
            );
            Ok(())
        }
        Command::Admin(dangjian::auth::cli::AdminCommand::RotateKey) => {
            let db = dangjian::platform::db::Db::connect(&settings.database_url).await?;
            db.migrate().await?;
            let cipher = dangjian::platform::pii::DataCipher::from_settings(&settings)?;
            let columns = dangjian::startup::sealed_columns();
            let (values, indexes) =
                dangjian::members::cli::rotate_key(&db, &cipher, &columns).await?;
            println!(
                "{values} value(s) re-sealed and {indexes} phone index(es) rewritten under key {}",
                cipher.current_key_id()
            );
            Ok(())
        }
        Command::Admin(cmd) => dangjian::auth::cli::run(&settings, cmd).await,
        Command::Worker { no_migrate } => {
            dangjian::startup::run_workers_until_stopped(settings, !no_migrate).await
        }
        Command::Migrate => {
            let db = dangjian::platform::db::Db::connect(&settings.database_url).await?;
            let n = db.migrate().await?;
            println!("{n} migration(s) applied");
            Ok(())
        }
    }
}
