//! The command line: what the user typed, dispatched to one command each; the edge where errors
//! become one line on stderr (with their causes) and an exit code.

use crate::inert::escape_controls as inert;
mod alerts;
mod check_config;
mod connect;
mod demo;
mod history;
mod once;
mod status;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::exit::{ExitCode, HELP_TABLE};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Watches the mail configuration of Zoho CRM and Zoho Desk orgs and alerts when it drifts.
#[derive(Debug, Parser)]
#[command(name = "auditd", version, after_help = HELP_TABLE)]
pub struct Cli {
    /// Config file [default: $AUDITD_CONFIG, else /etc/zoho-auditd/auditd.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (the filter comes from $AUDITD_LOG, default "info")
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Run one audit pass over the selected orgs and exit (see the exit codes below)
    #[arg(long)]
    pub once: bool,

    /// With --once: print one JSON summary on stdout
    #[arg(long, requires = "once")]
    pub json: bool,

    /// With --once: audit only this org (repeatable)
    #[arg(long = "org", value_name = "NAME", requires = "once")]
    pub orgs: Vec<String>,

    /// With --once: deliver nothing and queue nothing for this run's alerts (recorded as suppressed)
    #[arg(long, requires = "once")]
    pub no_notify: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands; none at all runs the daemon (or one pass with `--once`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and print it with secrets masked (exit 78 when invalid)
    CheckConfig,
    /// Per org and source: state, last audit, last change, outbox
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Give an org its refresh token through Zoho's consent page (clears needs-reconnect)
    Connect {
        /// The org's name in the config
        org: String,
        /// Where to receive the redirect [default: the host and port of redirect_uri]
        #[arg(long, value_name = "ADDR", conflicts_with = "code")]
        listen: Option<String>,
        /// A code, or the whole redirect URL, pasted from the browser instead of listening
        #[arg(long, value_name = "CODE_OR_REDIRECT_URL")]
        code: Option<String>,
    },
    /// Snapshots of an org, newest first, with the drift each one brought
    History {
        /// The org's name in the config
        org: String,
        /// Only this source (e.g. desk.reply_addresses)
        #[arg(long, value_name = "ID")]
        source: Option<String>,
        /// At most this many snapshots
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// The changes and unified diff between two snapshots of one source (default: the last two)
    Diff {
        /// The org's name in the config
        org: String,
        /// The source (e.g. desk.reply_addresses)
        #[arg(long, value_name = "ID")]
        source: String,
        /// The older snapshot [default: the one before --to]
        #[arg(long, value_name = "SNAPSHOT")]
        from: Option<i64>,
        /// The newer snapshot [default: the latest]
        #[arg(long, value_name = "SNAPSHOT")]
        to: Option<i64>,
    },
    /// Pending and dead alerts per channel; `alerts retry` requeues dead ones
    Alerts {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<AlertsAction>,
    },
    /// The whole job against the bundled Zoho simulator: no Zoho account needed
    Demo,
}

/// What `auditd alerts` can do besides listing.
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Requeue a dead alert (by the id `auditd alerts` shows), or every dead one
    Retry {
        /// The outbox id
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        /// Requeue every dead alert
        #[arg(long)]
        all_dead: bool,
    },
}

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::Clean,
                _ => ExitCode::Usage,
            };
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &anyhow::Error::new(e).context("cannot start the async runtime"),
                ExitCode::Fatal,
            )
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let config_path = config_path(cli.config.clone());
    if cli.once && cli.command.is_some() {
        return report(
            &anyhow::anyhow!("--once runs a pass; it cannot be combined with a subcommand"),
            ExitCode::Usage,
        );
    }
    match cli.command {
        Some(Command::CheckConfig) => check_config::run(&config_path),
        Some(Command::Status { json }) => status::run(&config_path, json).await,
        Some(Command::Demo) => demo::run().await,
        Some(Command::Connect { org, listen, code }) => connect::run(&config_path, &org, listen, code).await,
        Some(Command::History {
            org,
            source,
            limit,
            json,
        }) => history::history(&config_path, &org, source.as_deref(), limit, json).await,
        Some(Command::Diff { org, source, from, to }) => history::diff(&config_path, &org, &source, from, to).await,
        Some(Command::Alerts { json, action: None }) => alerts::list(&config_path, json).await,
        Some(Command::Alerts {
            action: Some(AlertsAction::Retry { id, all_dead }),
            ..
        }) => alerts::retry(&config_path, id, all_dead).await,
        None if cli.once => {
            once::run(
                &config_path,
                once::Options {
                    json: cli.json,
                    orgs: cli.orgs,
                    deliver: !cli.no_notify,
                },
            )
            .await
        }
        None => match crate::daemon::run_until_signalled(&config_path).await {
            Ok(()) => ExitCode::Clean,
            Err(e) => {
                let code = e.exit_code();
                report(&anyhow::Error::new(e), code)
            }
        },
    }
}

/// `--config`, else `$AUDITD_CONFIG`, else the default path.
fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("AUDITD_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::field::MakeExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: journald and CI logs get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match format {
        // Field values carry Zoho's text: a CR, LF or ESC in it must not forge a line or drive the
        // terminal, so every value is escaped (JSON lines are escaped by the encoder already).
        LogFormat::Text => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                    let text = format!("{value:?}");
                    let text = crate::inert::escape_controls(&text);
                    match field.name() {
                        "message" => write!(writer, "{text}"),
                        // Bridged `log` records carry their origin as fields; the default formatter hides them too.
                        name if name.starts_with("log.") => Ok(()),
                        name => write!(writer, "{name}={text}"),
                    }
                })
                .delimited(" "),
            )
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A message's own line breaks (a TOML parser's caret diagram) kept, but indented under it so that
/// no line can pass for a line of its own; every other control character escaped.
fn indented(message: &str) -> String {
    message
        .lines()
        .map(|l| inert(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Prints an error with its whole cause chain and returns `code`.
pub fn report(error: &anyhow::Error, code: ExitCode) -> ExitCode {
    let mut text = format!("auditd: error: {}", indented(&error.to_string()));
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {}", indented(&cause.to_string())));
    }
    eprintln!("{text}");
    code
}

/// Opens the existing database of a command that does not audit (no lock: these run beside the
/// daemon; and they never create a database at a mistyped path).
fn open_store(config: &Config) -> Result<crate::store::Store, ExitCode> {
    crate::store::Store::open_existing(&config.daemon.database)
        .map_err(|e| report(&anyhow::Error::new(e), ExitCode::Fatal))
}

/// Loads the config; an invalid one is exit 78. Warnings go to the log.
fn load_config(path: &std::path::Path, with_secrets: bool) -> Result<Config, ExitCode> {
    try_load_config(path, with_secrets).map_err(|e| report(&anyhow::Error::new(e), ExitCode::Config))
}

/// Loads the config (resolving every secret when the command will use them); warnings go to the log.
fn try_load_config(path: &std::path::Path, with_secrets: bool) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    if with_secrets {
        config.check_secrets()?;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}
