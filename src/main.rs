//! vminit: PID 1 of a container that becomes a virtual machine.
//!
//! The story of one run, in the order `run` tells it: block signals, read the
//! configuration, check every input, recover what an earlier run left, plan the
//! network takeover, apply it, open the taps, start dnsmasq and QEMU, supervise,
//! put the network back, exit with the guest's status.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod apply;
mod config;
mod console;
mod devices;
mod discover;
mod display;
mod dnsmasq;
mod error;
mod ethtool;
mod kvm;
mod netlink;
mod plan;
mod qemu;
mod qmp;
mod spawn;
mod supervise;
mod types;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::{Accel, Command, Config, Vhost};
use crate::error::{Error, Result, exit};
use crate::netlink::Netlink;
use crate::supervise::Signals;

const USAGE: &str = "\
usage: vminit [QEMU ARGUMENTS...]   boot /image/image.qcow2, extra arguments go to QEMU
       vminit bash|sh               prepare everything, then start a debug shell
       vminit health                exit 0 when the guest is running
Configuration is by environment variables (AUTO_ATTACH is required); see the README.";

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
    let code = match run(&config, &signals) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            e.exit_code()
        }
    };
    if config.display.is_some() {
        // QEMU has read the VNC password long ago (or never will): no copy outlives vminit.
        let _ = fs::remove_file(display::password_copy(&config.paths.run_dir));
    }
    if matches!(config.command, Command::Boot(_) | Command::Shell) {
        log::info!("exit {code}");
    }
    std::process::exit(code);
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

fn run(config: &Config, signals: &Signals) -> Result<i32> {
    match &config.command {
        Command::Help => {
            println!("{USAGE}");
            return Ok(0);
        }
        Command::Version => {
            println!(
                "vminit {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("VMINIT_REVISION")
            );
            return Ok(0);
        }
        Command::Health => return Ok(health(config)),
        Command::Boot(_) | Command::Shell => {}
    }
    let paths = &config.paths;

    // 1. Check every input before anything changes.
    devices::check_program(&paths.qemu, "QEMU")?;
    if config.dhcp {
        devices::check_program(&paths.dnsmasq, "dnsmasq")?;
    }
    devices::check_disk(&paths.disk)?;
    let vhost_probe = (config.vhost != Vhost::Off).then(|| devices::probe_vhost(&paths.dev));
    let vhost = report(qemu::choose_vhost(config.vhost, vhost_probe)?);
    let shell = match config.command {
        Command::Shell => Some(config::debug_shell(&|p| Path::new(p).exists()).ok_or_else(|| {
            Error::Program(
                "a debug shell (none of /bin/bash, /bin/sh, /bin/busybox; mount a static busybox with -v /path/to/busybox:/bin/busybox:ro)".into(),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            )
        })?),
        _ => None,
    };
    devices::probe_tap_nodes(&paths.dev, &paths.proc_devices)?;
    let major = devices::macvtap_major(&paths.proc_devices);
    make_run_dir(&paths.run_dir)?;
    if let Some(vnc) = &config.display {
        console::prepare(vnc, &paths.run_dir)?;
    }

    // 2. Find the NICs, putting back what an earlier run left, and plan.
    let mut nl = Netlink::open().map_err(|e| Error::os("open netlink socket", e))?;
    let state = recover(&mut nl)?;
    let plan = wait_for_plan(config, &mut nl, signals, state)?;
    let console_tcp = console::tcp_address(config.display.as_ref(), &plan, &mut nl)?;

    // 3. dnsmasq starts first: it loads and binds while the network changes (it picks up
    //    the doors as they appear), and is waited for before QEMU starts.
    let mut undo = Undo::default();
    // The KVM probe (a VM, a vCPU, three instructions: about a millisecond) runs beside
    // the network changes; its verdict is needed only for QEMU's command line.
    // With ACCEL=kvm its verdict can stop everything, so it is waited for before any change.
    let mut probe = (config.accel != Accel::Tcg).then(|| {
        let dev = paths.dev.clone();
        std::thread::spawn(move || devices::probe_kvm(&dev))
    });
    let mut accel = None;
    if config.accel == Accel::Kvm {
        let kvm = probe
            .take()
            .map(|t| t.join().expect("the KVM probe does not panic"));
        accel = Some(report(qemu::choose_accelerator(config.accel, kvm)?));
    }
    let dnsmasq_argv = match config.dhcp {
        true => Some(write_dnsmasq_conf(config, &plan.nics)?),
        false => None,
    };
    let spawn_options = spawn::SpawnOptions {
        mask: signals.original,
        keep: &[],
        own_group: true,
    };
    if let Some(argv) = &dnsmasq_argv {
        let pidfile = paths.run_dir.join("dnsmasq.pid");
        let _ = fs::remove_file(&pidfile);
        undo.dnsmasq = Some(spawn::spawn(argv, &spawn_options)?);
    }

    // 4. Apply: from here on, every failure puts the network back.
    let mut applier = apply::Applier::new(&mut nl);
    let applied = applier.apply_all(&plan.steps);
    let mut taps = Vec::new();
    let opened = applied.and_then(|()| {
        for nic in &plan.nics {
            let index = applier.index_of(&nic.tap)?;
            let tap = devices::open_tap(&paths.sys_class_net, &paths.dev, &nic.tap, index, major)?;
            taps.push(tap);
        }
        Ok(())
    });
    undo.steps = applier.take_applied();
    undo.taps = taps.iter().map(|t| t.path.clone()).collect();
    opened.map_err(|e| undo.fail(&mut nl, e))?;

    // 5. The accelerator: KVM only when the probe guest ran on it.
    let accel = match accel {
        Some(accel) => accel,
        None => {
            let kvm = probe.map(|t| t.join().expect("the KVM probe does not panic"));
            let choice = qemu::choose_accelerator(config.accel, kvm);
            report(choice.map_err(|e| undo.fail(&mut nl, e))?)
        }
    };
    if let Some(pid) = undo.dnsmasq {
        wait_for_dnsmasq(pid, &paths.run_dir).map_err(|e| undo.fail(&mut nl, e))?;
    }

    // 6. QEMU's command line.
    let nics: Vec<qemu::GuestNic> = plan
        .nics
        .iter()
        .zip(&taps)
        .map(|(n, t)| qemu::GuestNic {
            fd: t.fd.as_raw_fd(),
            mac: n.mac,
            mtu: n.mtu,
        })
        .collect();
    let qmp = paths.run_dir.join("qmp.sock");
    let health_sock = paths.run_dir.join("health.sock");
    let extra: &[OsString] = match &config.command {
        Command::Boot(args) => args,
        _ => &[],
    };
    let display_args = display::qemu_args(config.display.as_ref(), &paths.run_dir, console_tcp);
    let qemu_argv = qemu::argv(&qemu::QemuInput {
        qemu: &paths.qemu,
        accel,
        vhost,
        ram: &config.ram,
        cpus: config.cpus,
        disk: &paths.disk,
        qmp: &qmp,
        health: &health_sock,
        nics: &nics,
        display: &display_args,
        extra,
    });

    // A `docker stop` during setup ends it here, before the guest starts.
    if let Some(sig) = termination_pending(signals) {
        log::info!("received {sig} during setup; not starting the guest");
        undo.run(&mut nl);
        return Ok(128 + sig as i32);
    }

    if let Some(shell) = shell {
        let script = paths.run_dir.join("qemu.sh");
        let text = format!(
            "#!/bin/sh\n# The QEMU command vminit would run; arguments to this script are appended.\nexec {} \"$@\"\n",
            qemu::shell_line(&qemu_argv)
        );
        fs::write(&script, text)
            .map_err(|e| undo.fail(&mut nl, Error::os(format!("write {}", script.display()), e)))?;
        log::info!(
            "debug mode: run `sh {}` to start the guest; starting {}",
            script.display(),
            shell[0].to_string_lossy()
        );
        // The tap fds stay open (no CLOEXEC) for the shell and the QEMU it starts. exec
        // returns only when it failed: then nothing may stay taken over.
        let e = spawn::exec_shell(&shell, signals.original);
        return Err(undo.fail(&mut nl, e));
    }

    // 7. QEMU.
    log::info!("starting {}", qemu::shell_line(&qemu_argv));
    let tap_fds: Vec<RawFd> = taps.iter().map(|t| t.fd.as_raw_fd()).collect();
    let qemu_options = spawn::SpawnOptions {
        mask: signals.original,
        keep: &tap_fds,
        own_group: false,
    };
    let qemu_pid = spawn::spawn(&qemu_argv, &qemu_options).map_err(|e| undo.fail(&mut nl, e))?;
    log::info!("QEMU running, pid {qemu_pid}");
    // QEMU has its own copies of the tap fds; a restarted dnsmasq must not inherit ours.
    drop(taps);

    // 8. Supervise until the guest is gone, then put the network back.
    let mut effects = RealEffects {
        qmp,
        dnsmasq_argv,
        run_dir: paths.run_dir.clone(),
        mask: signals.original,
    };
    let dnsmasq = undo.dnsmasq.take();
    let code = supervise::run(
        signals,
        qemu_pid,
        dnsmasq,
        config.stop_timeout,
        &mut effects,
    );
    undo.run(&mut nl);
    Ok(code)
}

/// What setup has changed so far, to be put back on failure or after the guest stops.
#[derive(Default)]
struct Undo {
    dnsmasq: Option<Pid>,
    steps: Vec<plan::Step>,
    taps: Vec<PathBuf>,
}

impl Undo {
    /// Undoes everything, then hands back the error that made it necessary.
    fn fail(&mut self, nl: &mut Netlink, e: Error) -> Error {
        self.run(nl);
        e
    }

    /// Stops dnsmasq, undoes the network steps, removes the tap nodes.
    fn run(&mut self, nl: &mut Netlink) {
        if let Some(pid) = self.dnsmasq.take() {
            stop_and_reap(pid);
        }
        if !self.steps.is_empty() {
            log::info!("restoring the container's network");
            apply::undo(
                &mut apply::Applier::new(nl),
                &std::mem::take(&mut self.steps),
            );
        }
        for path in self.taps.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Logs a decision about QEMU and returns its value.
fn report<T>(choice: qemu::Choice<T>) -> T {
    if choice.warning {
        log::warn!("{}", choice.report);
    } else {
        log::info!("{}", choice.report);
    }
    choice.value
}

fn make_run_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::os(format!("create {}", dir.display()), e))
}

/// Puts back NICs that an earlier, killed vminit left taken over.
/// Returns the state when nothing needed recovery (the usual case), to plan from.
fn recover(nl: &mut Netlink) -> Result<Option<discover::NetState>> {
    let state = discover::read(nl).map_err(|e| Error::os("read the network configuration", e))?;
    let steps = plan::recovery(&state);
    if steps.is_empty() {
        return Ok(Some(state));
    }
    log::info!("recovering the network left by an earlier run");
    apply::Applier::new(nl).run_best_effort(&steps);
    Ok(None)
}

/// Plans the takeover, waiting up to IFACE_WAIT for interfaces and addresses that
/// are not there yet (Docker and device plugins may add them just after start).
fn wait_for_plan(
    config: &Config,
    nl: &mut Netlink,
    signals: &Signals,
    mut known: Option<discover::NetState>,
) -> Result<plan::Plan> {
    let deadline = Instant::now() + config.iface_wait;
    let mut logged = false;
    loop {
        let state = match known.take() {
            Some(state) => state,
            None => {
                discover::read(nl).map_err(|e| Error::os("read the network configuration", e))?
            }
        };
        let random = random_macs(state.links.len().max(1))?;
        let result = plan::plan(&plan::PlanInput {
            attach: &config.attach,
            selected_network: config.selected_network,
            state: &state,
            random_macs: &random,
        });
        match result {
            Err(Error::Network(why)) if Instant::now() < deadline => {
                if !logged {
                    log::info!(
                        "waiting up to {:?} for the network: {why}",
                        config.iface_wait
                    );
                    logged = true;
                }
                if let Some(sig) = termination_pending(signals) {
                    log::info!("received {sig} while waiting for the network");
                    std::process::exit(128 + sig as i32);
                }
                sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn random_macs(n: usize) -> Result<Vec<[u8; 6]>> {
    let mut bytes = vec![0u8; 6 * n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::os("read random bytes", e))?;
    Ok(bytes
        .chunks(6)
        .map(|c| c.try_into().expect("chunks of six"))
        .collect())
}

fn write_dnsmasq_conf(config: &Config, nics: &[plan::NicPlan]) -> Result<Vec<OsString>> {
    let paths = &config.paths;
    let resolv = fs::read_to_string(&paths.resolv_conf).unwrap_or_default();
    let dns = dnsmasq::Dns::from_resolv(&discover::parse_resolv(&resolv));
    let passwd = fs::read_to_string(&paths.passwd).unwrap_or_default();
    let user = dnsmasq::user_from_passwd(&passwd);
    if user == "root" {
        log::warn!(
            "{} has no user nobody: dnsmasq keeps running as root",
            paths.passwd.display()
        );
    }
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "vm".into());
    let text = dnsmasq::render(&dnsmasq::DnsmasqInput {
        nics,
        dns: &dns,
        hostname: hostname.split('.').next().unwrap_or("vm"),
        run_dir: &paths.run_dir,
        user,
    });
    let conf = paths.run_dir.join("dnsmasq.conf");
    fs::write(&conf, text).map_err(|e| Error::os(format!("write {}", conf.display()), e))?;
    log::info!("wrote {}", conf.display());
    Ok(vec![
        paths.dnsmasq.clone().into_os_string(),
        OsString::from(format!("--conf-file={}", conf.display())),
    ])
}

/// Starts dnsmasq and waits until it is serving.
fn start_dnsmasq(argv: &[OsString], run_dir: &Path, mask: nix::sys::signal::SigSet) -> Result<Pid> {
    let _ = fs::remove_file(run_dir.join("dnsmasq.pid"));
    let options = spawn::SpawnOptions {
        mask,
        keep: &[],
        own_group: true,
    };
    let pid = spawn::spawn(argv, &options)?;
    wait_for_dnsmasq(pid, run_dir)?;
    Ok(pid)
}

/// Waits until dnsmasq serves (it writes its pid file once its sockets are bound), or
/// reports why it could not start.
fn wait_for_dnsmasq(pid: Pid, run_dir: &Path) -> Result<()> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let pidfile = run_dir.join("dnsmasq.pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if fs::metadata(&pidfile).map(|m| m.len() > 0).unwrap_or(false) {
            log::info!("dnsmasq running, pid {pid}");
            return Ok(());
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => {
                return Err(Error::Unavailable(format!(
                    "dnsmasq could not start ({status:?}); its own message is above"
                )));
            }
            Err(e) => return Err(Error::os("wait for dnsmasq", e)),
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(
                "dnsmasq did not start within 5 s".into(),
            ));
        }
        sleep(Duration::from_micros(500));
    }
}

fn stop_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + supervise::GRACE;
    loop {
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                sleep(Duration::from_millis(5))
            }
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return;
            }
            _ => return,
        }
    }
}

/// A SIGTERM, SIGINT or SIGQUIT that arrived while vminit was busy.
fn termination_pending(signals: &Signals) -> Option<Signal> {
    signals
        .pending()
        .into_iter()
        .find(|s| matches!(s, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT))
}

/// `vminit health`: asks QEMU, over the health QMP socket, whether the guest runs.
fn health(config: &Config) -> i32 {
    let socket = config.paths.run_dir.join("health.sock");
    match qmp::execute(&socket, "query-status", Duration::from_secs(3)) {
        Ok(answer) if qmp::is_running(&answer) => {
            println!("guest running");
            0
        }
        Ok(answer) => {
            println!("guest not running: {answer}");
            1
        }
        Err(e) => {
            println!("QEMU not answering on {}: {e}", socket.display());
            1
        }
    }
}

/// The supervisor's effects on the real QEMU and dnsmasq.
struct RealEffects {
    qmp: PathBuf,
    dnsmasq_argv: Option<Vec<OsString>>,
    run_dir: PathBuf,
    mask: nix::sys::signal::SigSet,
}

impl supervise::Effects for RealEffects {
    fn powerdown(&mut self) -> bool {
        log::info!("pressing the guest's power button (QMP system_powerdown)");
        match qmp::execute(&self.qmp, "system_powerdown", Duration::from_secs(2)) {
            Ok(_) => true,
            Err(e) => {
                log::warn!("QMP system_powerdown: {e}; trying again shortly");
                false
            }
        }
    }

    fn quit(&mut self) {
        log::warn!("stopping QEMU now (QMP quit); the guest did not power off");
        if let Err(e) = qmp::execute(&self.qmp, "quit", Duration::from_secs(1)) {
            log::warn!("QMP quit: {e}");
        }
    }

    fn start_dnsmasq(&mut self) -> Option<Pid> {
        let argv = self.dnsmasq_argv.as_ref()?;
        match start_dnsmasq(argv, &self.run_dir, self.mask) {
            Ok(pid) => Some(pid),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }
}
