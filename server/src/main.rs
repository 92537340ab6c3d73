//! The `rondo` binary: parses the command line, installs the log subscriber and hands over to
//! [`rondo_server::cli::run`]. Everything else lives in the library.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use rondo_server::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_tracing(&cli) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    // Unlocked handles: server tasks log to stderr from other threads while a command runs.
    let code = cli::run(cli, &mut io::stdout(), &mut io::stderr()).await;
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Installs the fmt subscriber on stderr, as text (coloured only on a terminal) or JSON lines.
fn init_tracing(cli: &Cli) -> Result<(), String> {
    let directives = cli.log_directives();
    let filter = EnvFilter::try_new(directives).map_err(|e| {
        format!("invalid log filter `{directives}` (from --log, RONDO_LOG or RUST_LOG): {e}")
    })?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    match cli.global.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    Ok(())
}
