//! Boots the guest: checks every input, takes the network over, starts dnsmasq and QEMU,
//! supervises them, and puts the network back. Each phase is one method of `Setup`, which
//! is also the one owner of what must be undone.

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::accel::{self, Accelerator, Choice, KvmStatus};
use crate::apply::Applier;
use crate::config::{self, Accel, Command, Config, Vhost};
use crate::devices::{self, Tap};
use crate::dhcp_server::{self, DhcpServer};
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::netstate::NetState;
use crate::plan::{self, Plan};
use crate::rundir::RunDir;
use crate::step::Step;
use crate::supervise::{self, LiveEffects, Signals};
use crate::{discover, identity, lock, policy, qemu, spawn};

/// Boots the guest and supervises it until it stops; returns vminit's exit status.
/// Whatever happens, the network is put back before this returns (the debug shell, which
/// replaces vminit, is the exception).
pub fn run(config: &Config, signals: &Signals) -> Result<i32> {
    // Held until the network is put back (and by the debug shell, which replaces vminit).
    let _lock = lock::acquire()?;
    let checked = check_inputs(config)?;
    let mut setup = Setup::new(config, signals, checked)?;
    let result = setup.start_guest().map(|qemu| setup.supervise(qemu));
    setup.undo();
    result
}

/// What the checks found, for the phases that follow.
struct Checked {
    /// The disk chain, open for QEMU.
    disk: devices::Disk,
    vhost: bool,
    /// The debug shell to exec instead of QEMU (CMD `bash`/`sh`).
    shell: Option<Vec<OsString>>,
    /// The macvtap driver's major number, when it is loaded.
    tap_major: Option<u64>,
}

/// Checks every input before anything changes: the programs, the disk, vhost-net, the
/// debug shell, the right to create macvtap device nodes.
fn check_inputs(config: &Config) -> Result<Checked> {
    let paths = &config.paths;
    devices::check_program(&paths.qemu, "QEMU")?;
    if config.dhcp {
        devices::check_program(&paths.dnsmasq, "dnsmasq")?;
    }
    let disk = devices::open_disk(&paths.disk)?;
    log::info!("disk: {}", disk.describe());
    let vhost_probe = (config.vhost != Vhost::Off).then(|| devices::probe_vhost(&paths.dev));
    let vhost = report(accel::choose_vhost(config.vhost, vhost_probe)?);
    let shell = match config.command {
        Command::Shell => Some(
            config::debug_shell(&|p| Path::new(p).exists()).ok_or_else(|| Error::Program {
                what: "a debug shell (none of /bin/bash, /bin/sh, /bin/busybox; mount a static busybox with -v /path/to/busybox:/bin/busybox:ro)".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            })?,
        ),
        _ => None,
    };
    devices::probe_tap_nodes(&paths.dev, &paths.proc_devices)?;
    Ok(Checked {
        disk,
        vhost,
        shell,
        tap_major: devices::macvtap_major(&paths.proc_devices),
    })
}

/// The guest, once QEMU runs.
struct Guest {
    qemu: Pid,
}

/// The state of one boot, and everything it has changed so far.
struct Setup<'a> {
    config: &'a Config,
    signals: &'a Signals,
    checked: Checked,
    run_dir: RunDir,
    nl: Netlink,
    dhcp: Option<DhcpServer>,
    undo: Undo,
}

/// What setup has changed so far, to be put back on failure or after the guest stops.
#[derive(Default)]
struct Undo {
    dnsmasq: Option<Pid>,
    steps: Vec<Step>,
    taps: Vec<PathBuf>,
}

impl<'a> Setup<'a> {
    fn new(config: &'a Config, signals: &'a Signals, checked: Checked) -> Result<Setup<'a>> {
        let run_dir = RunDir::new(&config.paths.run_dir);
        make_private_dir(run_dir.root())?;
        let nl = Netlink::open().map_err(|e| Error::os("open netlink socket", e))?;
        Ok(Setup {
            config,
            signals,
            checked,
            run_dir,
            nl,
            dhcp: None,
            undo: Undo::default(),
        })
    }

    /// Every phase up to a running QEMU (or the debug shell, which does not return).
    fn start_guest(&mut self) -> Result<Guest> {
        let known = self.recover()?;
        let plan = self.wait_for_plan(known)?;
        let kvm = self.start_kvm_probe();
        // With ACCEL=kvm the probe's verdict can stop everything: wait for it first.
        let (kvm, forced) = match self.config.accel {
            Accel::Kvm => (None, Some(self.choose_accelerator(kvm)?)),
            _ => (kvm, None),
        };
        self.start_dnsmasq(&plan)?;
        let taps = self.take_over(&plan)?;
        let accel = match forced {
            Some(accel) => accel,
            None => self.choose_accelerator(kvm)?,
        };
        self.wait_for_dnsmasq()?;
        let argv = self.qemu_argv(&plan, &taps, accel);
        self.check_not_interrupted()?;
        if let Some(shell) = self.checked.shell.clone() {
            return Err(self.exec_shell(&shell, &argv));
        }
        self.start_qemu(&argv, taps)
    }

    /// Puts back NICs that an earlier, killed vminit left taken over. Returns the state
    /// when nothing needed recovery (the usual case), to plan from.
    fn recover(&mut self) -> Result<Option<NetState>> {
        let state = self.discover()?;
        let steps = identity::recovery(&state);
        if steps.is_empty() {
            return Ok(Some(state));
        }
        log::info!("recovering the network left by an earlier run");
        Applier::new(&mut self.nl).run_best_effort(&steps);
        Ok(None)
    }

    fn discover(&mut self) -> Result<NetState> {
        discover::read(&mut self.nl).map_err(|e| Error::os("read the network configuration", e))
    }

    /// Plans the takeover, waiting up to IFACE_WAIT for interfaces and addresses that
    /// are not there yet (Docker and device plugins may add them just after start).
    fn wait_for_plan(&mut self, mut known: Option<NetState>) -> Result<Plan> {
        let deadline = Instant::now() + self.config.iface_wait;
        let mut logged = false;
        loop {
            let state = match known.take() {
                Some(state) => state,
                None => self.discover()?,
            };
            let random = random_macs(state.links.len().max(1))?;
            let result = plan::plan(&plan::PlanInput {
                attach: &self.config.attach,
                selected_network: self.config.selected_network,
                state: &state,
                random_macs: &random,
            });
            match result {
                Err(e) if e.waiting_can_help() && Instant::now() < deadline => {
                    if !logged {
                        log::info!(
                            "waiting up to {:?} for the network: {e}",
                            self.config.iface_wait
                        );
                        logged = true;
                    }
                    self.check_not_interrupted()?;
                    sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// The KVM probe (a VM, a vCPU, three instructions: about a millisecond) runs beside
    /// the network changes; its verdict is needed only for QEMU's command line.
    fn start_kvm_probe(&self) -> Option<JoinHandle<KvmStatus>> {
        (self.config.accel != Accel::Tcg).then(|| {
            let dev = self.config.paths.dev.clone();
            std::thread::spawn(move || devices::probe_kvm(&dev))
        })
    }

    /// The accelerator: KVM only when the probe guest ran on it.
    fn choose_accelerator(&self, probe: Option<JoinHandle<KvmStatus>>) -> Result<Accelerator> {
        let kvm = probe.map(|t| t.join().expect("the KVM probe does not panic"));
        Ok(report(accel::choose_accelerator(self.config.accel, kvm)?))
    }

    /// dnsmasq starts before the network changes: it loads and binds while they happen
    /// (it picks up the doors as they appear), and is waited for before QEMU starts.
    fn start_dnsmasq(&mut self, plan: &Plan) -> Result<()> {
        if !self.config.dhcp {
            return Ok(());
        }
        let server = DhcpServer::configure(
            self.config,
            &plan.nics,
            &self.run_dir,
            self.signals.original,
        )?;
        self.undo.dnsmasq = Some(server.spawn()?);
        self.dhcp = Some(server);
        Ok(())
    }

    fn wait_for_dnsmasq(&self) -> Result<()> {
        match (&self.dhcp, self.undo.dnsmasq) {
            (Some(server), Some(pid)) => server.wait_ready(pid),
            _ => Ok(()),
        }
    }

    /// Applies the plan's steps and opens each macvtap's /dev/tapN for QEMU.
    fn take_over(&mut self, plan: &Plan) -> Result<Vec<Tap>> {
        let paths = &self.config.paths;
        let mut applier = Applier::new(&mut self.nl);
        let applied = applier.apply_all(&plan.steps);
        let mut taps = Vec::new();
        let opened = applied.and_then(|()| {
            for nic in &plan.nics {
                let index = applier.index_of(&nic.tap)?;
                let tap = devices::open_tap(
                    &paths.sys_class_net,
                    &paths.dev,
                    &nic.tap,
                    index,
                    self.checked.tap_major,
                )?;
                taps.push(tap);
            }
            Ok(())
        });
        self.undo.steps = applier.take_applied();
        self.undo.taps = taps.iter().map(|t| t.path.clone()).collect();
        opened.map(|()| taps)
    }

    /// QEMU's command line: the plan's NICs on their tap fds, then CMD's arguments.
    fn qemu_argv(&self, plan: &Plan, taps: &[Tap], accel: Accelerator) -> Vec<OsString> {
        let nics: Vec<qemu::GuestNic> = plan
            .nics
            .iter()
            .zip(taps)
            .map(|(n, t)| qemu::GuestNic {
                fd: t.fd.as_raw_fd(),
                mac: n.mac,
                mtu: n.mtu,
            })
            .collect();
        let disk = self.checked.disk.raw_fds();
        let extra: &[OsString] = match &self.config.command {
            Command::Boot(args) => args,
            _ => &[],
        };
        qemu::argv(&qemu::QemuInput {
            qemu: &self.config.paths.qemu,
            accel,
            vhost: self.checked.vhost,
            ram: &self.config.ram,
            cpus: self.config.cpus,
            disk: &disk,
            sandbox: self.config.qemu_sandbox,
            qmp: &self.run_dir.qmp(),
            health: &self.run_dir.health(),
            nics: &nics,
            extra,
        })
    }

    /// A `docker stop` during setup ends it here, before the guest starts.
    fn check_not_interrupted(&self) -> Result<()> {
        match termination_pending(self.signals) {
            Some(sig) => Err(Error::Interrupted(sig)),
            None => Ok(()),
        }
    }

    /// Debug mode: writes the QEMU command line where the shell can run it and replaces
    /// vminit with the shell. The tap fds stay open (no CLOEXEC) for the shell and the QEMU
    /// it starts. Returns only when the exec failed.
    fn exec_shell(&self, shell: &[OsString], argv: &[OsString]) -> Error {
        let script = self.run_dir.qemu_script();
        let text = format!(
            "#!/bin/sh\n# The QEMU command vminit would run; arguments to this script are appended.\nexec {} \"$@\"\n",
            qemu::shell_line(argv)
        );
        if let Err(e) = fs::write(&script, text) {
            return Error::os(format!("write {}", script.display()), e);
        }
        log::info!(
            "debug mode: run `sh {}` to start the guest; starting {}",
            script.display(),
            shell[0].to_string_lossy()
        );
        spawn::exec_shell(shell, self.signals.original)
    }

    fn start_qemu(&mut self, argv: &[OsString], taps: Vec<Tap>) -> Result<Guest> {
        log::info!("starting {}", qemu::shell_line(argv));
        let mut keep: Vec<RawFd> = taps.iter().map(|t| t.fd.as_raw_fd()).collect();
        keep.extend(self.checked.disk.fds());
        let options = spawn::SpawnOptions {
            mask: self.signals.original,
            keep: &keep,
            own_group: false,
            drop_privileges: self.config.qemu_caps == config::QemuCaps::Drop,
        };
        let qemu = spawn::spawn(argv, &options)?;
        log::info!("QEMU running, pid {qemu}");
        // QEMU has its own copies of the tap and disk fds; a restarted dnsmasq must not
        // inherit ours.
        drop(taps);
        drop(std::mem::take(&mut self.checked.disk));
        Ok(Guest { qemu })
    }

    /// Runs the supervisor until QEMU is gone; returns the exit status.
    fn supervise(&mut self, guest: Guest) -> i32 {
        let mut effects = LiveEffects::new(self.run_dir.qmp(), self.dhcp.clone());
        let dnsmasq = self.undo.dnsmasq.take();
        supervise::run(
            self.signals,
            guest.qemu,
            dnsmasq,
            self.config.stop_timeout,
            &mut effects,
        )
    }

    /// Stops dnsmasq, undoes the network steps newest first, removes the tap nodes.
    fn undo(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        if let Some(pid) = undo.dnsmasq {
            dhcp_server::stop_and_reap(pid);
        }
        if !undo.steps.is_empty() {
            log::info!("restoring the container's network");
            Applier::new(&mut self.nl).undo(&undo.steps);
        }
        for path in undo.taps {
            let _ = fs::remove_file(path);
        }
    }
}

/// Logs a decision about QEMU and returns its value.
fn report<T>(choice: Choice<T>) -> T {
    if choice.warning {
        log::warn!("{}", choice.report);
    } else {
        log::info!("{}", choice.report);
    }
    choice.value
}

/// `mkdir -p -m 0700 DIR`, and 0700 even if it existed.
fn make_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::os(format!("create {}", dir.display()), e))
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

/// A request to stop (SIGTERM, SIGINT, SIGPWR, SIGRTMIN+3, SIGQUIT) that arrived while
/// vminit was busy.
fn termination_pending(signals: &Signals) -> Option<i32> {
    signals
        .pending()
        .into_iter()
        .find(|&s| policy::is_stop_request(s) || policy::is_stop_now(s))
}
