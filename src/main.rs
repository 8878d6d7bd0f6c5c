//! vminit: PID 1 of a container that becomes a virtual machine.
//!
//! The story of one run, in the order `run` tells it: block signals, read the
//! configuration, check every input, recover what an earlier run left, plan the
//! network takeover, apply it, open the taps, start dnsmasq and QEMU, supervise,
//! put the network back, exit with the guest's status.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod apply;
mod config;
mod devices;
mod discover;
mod dnsmasq;
mod error;
mod ethtool;
mod kvm;
mod netlink;
mod plan;
mod qemu;
mod qmp;
mod seed;
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
    let seed = load_seed(config)?;
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

    // 2. Find the NICs, putting back what an earlier run left, and plan.
    let mut nl = Netlink::open().map_err(|e| Error::os("open netlink socket", e))?;
    let state = recover(&mut nl)?;
    let plan = wait_for_plan(config, &mut nl, signals, state)?;
    let seed_dir = match &seed {
        Some(seed) => Some(write_seed(config, seed, &plan.nics)?),
        None => None,
    };

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
        seed: seed_dir.as_deref(),
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
    let hostname = config
        .seed
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(container_hostname);
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

/// The container's hostname (Docker's default: the container id).
fn container_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "vm".into())
}

/// Reads the files the `CLOUD_INIT_*` inputs name and checks everything: the seed, if one was
/// asked for. Runs before anything changes.
fn load_seed(config: &Config) -> Result<Option<seed::Seed>> {
    let Some(request) = &config.seed else {
        return Ok(None);
    };
    let read = |var: &'static str, path: &Path| {
        fs::read(path).map_err(|e| {
            Error::Config(
                var.into(),
                format!(
                    "cannot read {}: {e}; mount the file with -v FILE:{}:ro",
                    path.display(),
                    path.display()
                ),
            )
        })
    };
    let keys = match &request.ssh_keys_file {
        Some(path) => Some(read(seed::SSH_KEYS_FILE, path)?),
        None => None,
    };
    let user_data = match &request.user_data_file {
        Some(path) => Some(read(seed::USER_DATA, path)?),
        None => None,
    };
    let seed = seed::seed(request, keys.as_deref(), user_data, &container_hostname())
        .map_err(|e| Error::Config(e.var.into(), e.msg))?;
    if seed::own_cloud_config_lacks_updates(&seed) {
        log::warn!(
            "{} has no `updates:`; add `updates: {{network: {{when: [boot]}}}}` so that the guest follows the container's MACs and addresses after a restart",
            seed::USER_DATA
        );
    }
    Ok(Some(seed))
}

/// Writes the seed's files into RUN_DIR/seed, the directory QEMU presents as the `cidata` disk.
fn write_seed(config: &Config, seed: &seed::Seed, nics: &[plan::NicPlan]) -> Result<PathBuf> {
    let resolv = fs::read_to_string(&config.paths.resolv_conf).unwrap_or_default();
    let dns = dnsmasq::Dns::from_resolv(&discover::parse_resolv(&resolv));
    let seed_nics = seed_nics(nics, &dns, config.dhcp);
    let dir = config.paths.run_dir.join("seed");
    let files = [
        ("meta-data", seed::meta_data(seed).into_bytes()),
        ("user-data", seed::user_data(seed)),
        (
            "network-config",
            seed::network_config(&seed_nics).into_bytes(),
        ),
    ];
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(|e| Error::os(format!("create {}", dir.display()), e))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|e| Error::os(format!("write {}", path.display()), e))?;
    }
    log::info!(
        "wrote the cloud-init seed {} (instance-id {}, hostname {})",
        dir.display(),
        seed.instance_id,
        seed.hostname
    );
    Ok(dir)
}

/// The guest NICs as the seed's network-config states them: what dnsmasq gives each by DHCP.
/// Without dnsmasq (`dhcp` false) nothing forwards to the container's loopback resolvers, so
/// only the resolvers the guest reaches directly are listed.
fn seed_nics(nics: &[plan::NicPlan], dns: &dnsmasq::Dns, dhcp: bool) -> Vec<seed::SeedNic> {
    let mut dns = dns.clone();
    if !dhcp {
        dns.forward_to.clear();
    }
    // dnsmasq hands out the search list, and the domain as the only one when there is none.
    let search = match (&dns.search, &dns.domain) {
        (search, _) if !search.is_empty() => search.clone(),
        (_, Some(domain)) => vec![domain.clone()],
        _ => Vec::new(),
    };
    nics.iter()
        .map(|n| seed::SeedNic {
            name: n.lower.clone(),
            mac: n.mac.to_string(),
            addr: n.addr.addr,
            prefix: n.addr.prefix,
            mtu: n.mtu,
            routes: n
                .guest_routes
                .iter()
                .map(|r| seed::SeedRoute {
                    network: r.dst.network(),
                    prefix: r.dst.prefix,
                    gateway: r.gateway,
                })
                .collect(),
            dns: dns.servers_for(n),
            search: search.clone(),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Ipv4Net, Mac, Route};
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// eth0 of a Docker container, 172.19.0.2/24 via 172.19.0.1, door 169.254.1.10.
    fn nic() -> plan::NicPlan {
        plan::NicPlan {
            lower: "eth0".into(),
            tap: "vmtap0".into(),
            door: "vmlink0".into(),
            mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
            mtu: 1450,
            addr: "172.19.0.2/24".parse().unwrap(),
            gateway: Some(ip("172.19.0.1")),
            guest_routes: vec![
                Route {
                    dst: Ipv4Net::new(ip("169.254.1.10"), 32),
                    gateway: None,
                    metric: None,
                },
                Route {
                    dst: "10.7.3.0/16".parse().unwrap(),
                    gateway: Some(ip("172.19.0.254")),
                    metric: None,
                },
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gateway: Some(ip("172.19.0.1")),
                    metric: None,
                },
            ],
            door_addr: ip("169.254.1.10"),
        }
    }

    #[test]
    fn the_seed_states_what_dhcp_gives_and_without_dhcp_only_resolvers_the_guest_reaches() {
        let resolv = discover::parse_resolv(
            "nameserver 127.0.0.11\nnameserver 8.8.8.8\ndomain corp.example.test\n",
        );
        let dns = dnsmasq::Dns::from_resolv(&resolv);
        let with = seed_nics(&[nic()], &dns, true);
        let expected = seed::SeedNic {
            name: "eth0".into(),
            mac: "02:42:ac:13:00:02".into(),
            addr: ip("172.19.0.2"),
            prefix: 24,
            mtu: 1450,
            routes: vec![
                seed::SeedRoute {
                    network: ip("169.254.1.10"),
                    prefix: 32,
                    gateway: None,
                },
                seed::SeedRoute {
                    network: ip("10.7.0.0"),
                    prefix: 16,
                    gateway: Some(ip("172.19.0.254")),
                },
                seed::SeedRoute {
                    network: ip("0.0.0.0"),
                    prefix: 0,
                    gateway: Some(ip("172.19.0.1")),
                },
            ],
            // The door forwards to Docker's 127.0.0.11, as in the DHCP offer.
            dns: vec![ip("169.254.1.10"), ip("8.8.8.8")],
            search: vec!["corp.example.test".into()],
        };
        assert_eq!(with, std::slice::from_ref(&expected));
        let without = seed_nics(&[nic()], &dns, false);
        assert_eq!(
            without,
            [seed::SeedNic {
                dns: vec![ip("8.8.8.8")],
                ..expected
            }]
        );
    }
}
