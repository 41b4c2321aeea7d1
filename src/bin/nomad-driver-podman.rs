//! Entry point: picks a mode and hands over. Nothing else lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nomad-driver-podman", version, about = "Nomad task driver for podman")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Version) => {
            println!("nomad-driver-podman {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("nomad-driver-podman: no mode given; see --help");
            ExitCode::from(1)
        }
    }
}
