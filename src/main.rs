//! The `concord` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = concord::cli::Cli::parse();
    match concord::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
