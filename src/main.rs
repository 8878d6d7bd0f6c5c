//! vminit: PID 1 of a container that becomes a virtual machine.
//!
//! The story of one run: block signals, read the configuration, start logging, then do
//! what was asked — boot the guest (`setup::run`: check, take the network over, start
//! dnsmasq and QEMU, supervise, put the network back), or answer a health check — and
//! exit with the guest's status or the error's code.

mod config;
mod dhcp;
mod error;
mod ipv6;
mod net;
mod pid1;
mod rundir;
mod setup;
mod takeover;
#[cfg(test)]
mod testing;
mod vm;

use std::io::Write;

use crate::config::{Command, Config};
use crate::error::{Error, exit};
use crate::pid1::supervise::Signals;
use crate::rundir::RunDir;

const USAGE: &str = "\
usage: vminit [QEMU ARGUMENTS...]   boot /image/image.qcow2, extra arguments go to QEMU
       vminit bash|sh               prepare everything, then start a debug shell
       vminit health                exit 0 when the guest runs and holds its addresses
Configuration is by environment variables (AUTO_ATTACH is required); see docs/reference.md.";

fn main() {
    // Before anything else: no signal may be lost or kill PID 1 while it sets up.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vminit: error: cannot block signals: {e}");
            std::process::exit(exit::OS);
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    let config = match config::parse(std::env::args_os().skip(1), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vminit: error: {e}");
            eprintln!("vminit: exit {}", e.exit_code());
            std::process::exit(e.exit_code());
        }
    };
    init_logging(config.log_level);
    let code = match config.command {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Version => {
            println!(
                "vminit {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("VMINIT_REVISION")
            );
            0
        }
        Command::Health => health(&config),
        Command::Boot(_) | Command::Shell => boot(&config, &signals),
    };
    std::process::exit(code);
}

/// Boots the guest and reports how the run ended.
fn boot(config: &Config, signals: &Signals) -> i32 {
    let code = match setup::run(config, signals) {
        Ok(code) => code,
        Err(e @ Error::Interrupted(_)) => {
            log::info!("{e}");
            e.exit_code()
        }
        Err(e) => {
            // A fatal error is printed whatever LOG_LEVEL says.
            if log::log_enabled!(log::Level::Error) {
                log::error!("{e}");
            } else {
                eprintln!("vminit: error: {e}");
            }
            e.exit_code()
        }
    };
    log::info!("exit {code}");
    code
}

fn init_logging(level: log::LevelFilter) {
    env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, record| {
            let prefix = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug => "debug: ",
                log::Level::Trace => "trace: ",
            };
            writeln!(buf, "vminit: {prefix}{}", record.args())
        })
        .target(env_logger::Target::Stderr)
        .init();
}

/// `vminit health`: whether the guest runs and holds every address it was handed.
fn health(config: &Config) -> i32 {
    setup::health::check(&RunDir::new(&config.paths.run_dir), config.health_grace)
}
