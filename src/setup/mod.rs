//! Boots the guest: checks every input, takes the network over, starts dnsmasq and QEMU,
//! supervises them, and puts the network back. Each phase is one method of `Boot`, which
//! consumes itself into the running `Guest` (`guest`) when QEMU starts, or, when a phase
//! fails, puts back what it changed. What the guest does while the supervisor runs (its
//! effects, hot-plug) is in `running`; the health check, which runs beside it (`vminit
//! health`), in `health`.

mod guest;
pub mod health;
mod running;
mod user;

use guest::{Guest, GuestNics};

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::config::{self, Accel, Command, Config, Datapath, NetDatapath, Pause, Vhost};
use crate::dhcp::dhcp_server::{self, DhcpServer};
use crate::dhcp::resolv;
use crate::error::{Error, NetworkError, Result};
use crate::ipv6::announce::Dns6;
use crate::ipv6::announcer::{Announcers, Listening};
use crate::ipv6::packet::PacketSocket;
use crate::net::apply::Applier;
use crate::net::monitor::Monitor;
use crate::net::netlink::Netlink;
use crate::net::netstate::NetState;
use crate::net::step::Step;
use crate::pid1::supervise::Signals;
use crate::rundir::RunDir;
use crate::takeover::plan::{self, NicPlan, Plan};
use crate::takeover::plan6::Guest6;
use crate::takeover::slot::Slot;
use crate::vm::accel::{self, Accelerator, Choice, KvmStatus, UserBackend};
use crate::vm::devices::{self, Tap};
use crate::vm::kvm::ProbeVm;
use crate::vm::{sandbox, slirp};
use crate::{
    dhcp::dnsmasq, ipv6::announce, ipv6::gateway6, net::discover, net::tun, pid1::lock,
    pid1::policy, pid1::spawn, takeover::identity, vm::console, vm::display, vm::machine,
    vm::provision, vm::qemu, vm::seed, vm::tpm,
};

/// Boots the guest and supervises it until it stops; returns vminit's exit status.
/// Whatever happens, the network is put back before this returns (the debug shell, which
/// replaces vminit, is the exception).
pub fn run(config: &Config, signals: &Signals) -> Result<i32> {
    // Held until the network is put back (and by the debug shell, which replaces vminit).
    let lock = lock::acquire()?;
    if config.command == Command::Shell {
        lock.keep_across_exec()?;
    }
    let checked = check_inputs(config, signals)?;
    // A run whose guest never starts leaves the image directory as it found it.
    let made = checked.made.clone();
    let started = Boot::new(config, signals, checked).and_then(Boot::start_guest);
    let mut guest = started.inspect_err(|_| made.undo())?;
    let status = guest.supervise();
    guest.put_back();
    Ok(status)
}

/// What the checks found, for the phases that follow.
struct Checked {
    vhost: bool,
    /// The guest's disks and firmware files.
    media: Media,
    /// What this run made beside the disk, to remove again if the guest never starts.
    made: provision::Made,
    /// The cloud-init seed the `CLOUD_INIT_*` inputs ask for, its files read and checked.
    seed: Option<seed::Seed>,
    /// The debug shell to exec instead of QEMU (CMD `bash`/`sh`).
    shell: Option<Vec<OsString>>,
    /// The macvtap driver's major number, when it is loaded.
    tap_major: Option<u64>,
    /// The datapath every NIC gets.
    datapath: Datapath,
    /// User mode's relay (passt, or slirp where passt cannot sandbox itself).
    user_backend: UserBackend,
    /// vminit's effective capabilities (bit N: capability N).
    caps: u64,
}

/// The guest's media, open for QEMU.
struct Media {
    /// The disk chain.
    disk: devices::Disk,
    /// The extra disks' chains (`disk2.qcow2`, ...), in order.
    extra_disks: Vec<devices::Disk>,
    /// `BOOT_ISO`, and whether the disk is new (the guest boots the ISO).
    iso: Option<(devices::DiskFile, bool)>,
    /// UEFI (`BOOT_MODE`): the firmware's code, and its variables.
    efi: Option<(machine::Firmware, devices::DiskFile)>,
    /// `TPM=yes`: the TPM's state directory, checked writable.
    tpm_state: Option<PathBuf>,
    /// What `DISK_SIZE` grows the disk by, made after every check (`Boot::grow_disk`).
    growth: Option<provision::Growth>,
}

impl Media {
    /// The descriptors of every file QEMU inherits: the disks, the ISO, the UEFI variables.
    fn fds(&self) -> Vec<RawFd> {
        let mut fds = self.disk.fds();
        for extra in &self.extra_disks {
            fds.extend(extra.fds());
        }
        let files = self
            .iso
            .iter()
            .map(|(f, _)| f)
            .chain(self.efi.iter().map(|(_, f)| f));
        for file in files {
            fds.push(file.read.as_raw_fd());
            fds.extend(file.write.as_ref().map(AsRawFd::as_raw_fd));
        }
        fds
    }

    /// Closes them, once QEMU has its own copies.
    fn close_files(&mut self) {
        self.disk = devices::Disk::default();
        self.extra_disks.clear();
        self.iso = None;
        self.efi = None;
    }
}

/// Checks every input before anything changes in the network: the datapath (the right to
/// take the network over and to create macvtap device nodes), the programs, the disk
/// (created or grown first when asked), vhost-net, the debug shell.
fn check_inputs(config: &Config, signals: &Signals) -> Result<Checked> {
    let paths = &config.paths;
    let caps = devices::effective_caps(Path::new("/proc/self/status"));
    let datapath = report(accel::choose_user(
        config.datapath,
        caps & (1 << devices::CAP_NET_ADMIN) != 0,
        || choose_datapath(config),
    )?);
    RunDir::new(&paths.run_dir)
        .check_sockets()
        .map_err(|msg| Error::config("VMINIT_RUN_DIR", msg))?;
    check_ram(config)?;
    devices::check_program(&paths.qemu, "QEMU")?;
    // Probed before anything starts: a passt that cannot sandbox itself exits at once.
    let user_backend = match datapath {
        Datapath::User => report(accel::choose_user_backend(sandbox::probe_sandbox())),
        Datapath::Macvtap | Datapath::Tap => UserBackend::Passt,
    };
    match datapath {
        Datapath::User if user_backend == UserBackend::Slirp => {}
        Datapath::User => devices::check_program(&paths.passt, "passt")?,
        Datapath::Macvtap | Datapath::Tap if config.dhcp => {
            devices::check_program(&paths.dnsmasq, "dnsmasq")?
        }
        Datapath::Macvtap | Datapath::Tap => {}
    }
    // Everything that changes nothing comes first: a bad seed, vhost-net or debug shell
    // stops vminit before a disk is made.
    let seed = load_seed(config)?;
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
    let mut made = provision::Made::default();
    let media = open_media(config, signals, &mut made).inspect_err(|_| made.undo())?;
    Ok(Checked {
        vhost,
        media,
        made,
        seed,
        shell,
        tap_major: devices::macvtap_major(&paths.proc_devices),
        datapath,
        user_backend,
        caps,
    })
}

/// The guest's media, opened (and the disk, UEFI variables and TPM state made or grown first
/// when asked; what is made is recorded in `made`).
fn open_media(config: &Config, signals: &Signals, made: &mut provision::Made) -> Result<Media> {
    let watch = provision::Watch {
        mask: signals.original,
        interrupted: &|| termination_pending(signals),
    };
    // The media first: a bad one stops vminit before the disk is made.
    let iso = provision::open_iso(config)?;
    let extra_disks = provision::open_extra_disks(config)?;
    let efi = provision::open_efi_vars(config, &watch, made)?;
    let tpm_state = tpm::prepare(config, made)?;
    provision::create_disk(config, &watch, made)?;
    let disk = devices::open_disk(&config.paths.disk)?;
    let growth = provision::plan_growth(config, &disk)?;
    log::info!("disk: {}", disk.describe());
    for extra in &extra_disks {
        log::info!("extra disk: {}", extra.describe());
    }
    let iso = iso.map(|iso| {
        let new = provision::disk_is_new(&disk);
        log::info!(
            "BOOT_ISO: {} as a CD-ROM; the guest boots {}",
            iso.path.display(),
            if new {
                "from it once, as the disk has never been written"
            } else {
                "from the disk, which has been written"
            }
        );
        (iso, new)
    });
    Ok(Media {
        disk,
        extra_disks,
        iso,
        efi,
        tpm_state,
        growth,
    })
}

/// The takeover datapath this container allows (`NET_DATAPATH`, `auto`): make and open
/// macvtap device nodes, else open `/dev/net/tun`; the error when neither can be had.
fn choose_datapath(config: &Config) -> Result<Choice<Datapath>> {
    let paths = &config.paths;
    let macvtap = match config.datapath {
        NetDatapath::Tap => accel::MacvtapProbe::NotLoaded,
        _ => devices::probe_tap_nodes(&paths.dev, &paths.proc_devices),
    };
    let tun_path = tun_device(config);
    let tun = match config.datapath {
        NetDatapath::Macvtap => Ok(()),
        _ => tun::probe(&tun_path).map_err(|e| format!("open {}: {e}", tun_path.display())),
    };
    accel::choose_datapath(config.datapath, macvtap, tun)
}

/// The tun device the tap datapath makes its taps on.
fn tun_device(config: &Config) -> PathBuf {
    config.paths.dev.join("net/tun")
}

/// Reads the files the `CLOUD_INIT_*` inputs name and checks everything: the seed, if one was
/// asked for.
fn load_seed(config: &Config) -> Result<Option<seed::Seed>> {
    let Some(request) = &config.seed else {
        return Ok(None);
    };
    let read = |var: &'static str, path: &Path| {
        fs::read(path).map_err(|e| {
            Error::config(
                var,
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
    let seed = seed::seed(request, keys.as_deref(), user_data, &discover::hostname())
        .map_err(|e| Error::config(e.var, e.msg))?;
    if seed::own_cloud_config_lacks_updates(&seed) {
        log::warn!(
            "{} has no `updates:`; add `updates: {{network: {{when: [boot]}}}}` so that the guest follows the container's MACs and addresses after a restart",
            seed::USER_DATA
        );
    }
    Ok(Some(seed))
}

/// One boot up to a running QEMU, and everything it has changed so far.
struct Boot<'a> {
    config: &'a Config,
    signals: &'a Signals,
    checked: Checked,
    run_dir: RunDir,
    nl: Netlink,
    /// Notifications of network changes, for hot-plug; `None` if it could not be opened.
    monitor: Option<Monitor>,
    dhcp: Option<DhcpServer>,
    dnsmasq: Option<Pid>,
    /// User mode: each guest NIC's passt.
    passts: Vec<user::Passt>,
    /// The guest's IPv6 announcements, handed to the supervisor.
    announcers: Option<Announcers>,
    /// The guest's NICs taken over so far.
    nics: GuestNics,
    /// swtpm (`TPM=yes`).
    tpm: Option<Pid>,
}

/// One container NIC handed to the guest.
struct TakenNic {
    nic: NicPlan,
    /// The steps applied, to undo newest first.
    steps: Vec<Step>,
    /// Its /dev/tapN node, once made.
    node: Option<PathBuf>,
    /// The tap datapath's tap, held by vminit until its steps are undone (deleting it
    /// explicitly, as a macvtap is; QEMU has its own descriptor).
    held: Option<OwnedFd>,
    /// Taken over while the guest runs and not plugged into it yet.
    pending: Option<running::Pending>,
    /// What the guest is told about IPv6 on it, once announced.
    guest6: Option<Guest6>,
}

impl<'a> Boot<'a> {
    fn new(config: &'a Config, signals: &'a Signals, checked: Checked) -> Result<Boot<'a>> {
        let run_dir = RunDir::new(&config.paths.run_dir);
        make_private_dir(run_dir.root())?;
        // A restarted container keeps /run: the health check starts afresh with this guest.
        let _ = fs::remove_file(run_dir.guest_nics());
        let _ = fs::remove_file(run_dir.health_state());
        if let Some(vnc) = &config.display {
            console::prepare(vnc, &run_dir.vnc_password())?;
        }
        // Opened before the first look at the namespace: a NIC that arrives in between is
        // reported, not missed.
        let monitor = Monitor::open()
            .inspect_err(|e| {
                log::warn!("cannot follow network changes ({e}); NICs connected later stay with the container")
            })
            .ok();
        let nl = Netlink::open().map_err(|e| Error::os("open netlink socket", e))?;
        Ok(Boot {
            config,
            signals,
            checked,
            run_dir,
            nl,
            monitor,
            dhcp: None,
            dnsmasq: None,
            passts: Vec::new(),
            announcers: None,
            nics: GuestNics::default(),
            tpm: None,
        })
    }

    /// Every phase up to a running QEMU (or the debug shell, which does not return): the
    /// boot becomes the running guest. When a phase fails, what the boot changed is put
    /// back before the error is returned.
    fn start_guest(mut self) -> Result<Guest<'a>> {
        let phases = self.phases();
        if phases.is_ok() {
            self.nics.publish(&self.run_dir);
        }
        match phases {
            Ok(qemu) => Ok(Guest {
                router6: None,
                config: self.config,
                signals: self.signals,
                checked: self.checked,
                run_dir: self.run_dir,
                nl: self.nl,
                monitor: self.monitor,
                dhcp: self.dhcp,
                dnsmasq: self.dnsmasq,
                passts: self.passts,
                announcers: self.announcers,
                nics: self.nics,
                tpm: self.tpm,
                qemu,
                waiting: HashMap::new(),
                left: HashSet::new(),
            }),
            Err(e) => {
                self.announcers = None;
                user::stop_passts(&mut self.passts);
                guest::put_back(
                    self.config,
                    &mut self.nl,
                    &self.run_dir,
                    self.dnsmasq,
                    self.tpm,
                    self.nics,
                );
                Err(e)
            }
        }
    }

    /// The phases, in order; QEMU's pid once it runs.
    fn phases(&mut self) -> Result<Pid> {
        if self.checked.datapath == Datapath::User {
            return self.user_phases();
        }
        let known = self.recover()?;
        let plan = self.wait_for_plan(known)?;
        self.check_slots(&plan)?;
        let console_tcp = console::tcp_address(self.config.display.as_ref(), &plan, &mut self.nl)?;
        let seed = self.write_seed(&plan)?;
        let probe = self.start_kvm_probe();
        // With ACCEL=kvm the probe's verdict can stop everything: wait for it first.
        let forced = match self.config.accel {
            Accel::Kvm => Some(self.choose_accelerator(probe.as_ref())?),
            _ => None,
        };
        self.start_tpm()?;
        let raw_probe = self.check_packet_sockets(&plan)?;
        self.grow_disk()?;
        let taps = self.make_guest_links(&plan)?;
        self.nics.set_guests6(&plan.v6);
        let accel = match forced {
            Some(accel) => accel,
            None => self.choose_accelerator(probe.as_ref())?,
        };
        let netdevs = taps
            .iter()
            .map(|t| qemu::Netdev::Tap(t.raw_fds()))
            .collect();
        let qemu = self.launch(&plan, netdevs, taps, accel, seed.as_deref(), console_tcp)?;
        drop(probe);
        if let Err(e) = self.hand_over(&plan) {
            stop_at_once(qemu);
            return Err(e);
        }
        log::info!("QEMU running, pid {qemu}");
        // The announcers and the IPv6 gateways' facts are nothing the guest can use before
        // it has booted, so they are had while QEMU starts: a guest solicits routers and asks
        // DHCPv6 only once its link-local address has passed duplicate address detection (a
        // second at least, RFC 4862), and what it sends after the doors' sockets opened
        // waits in them until the supervisor reads it, announcers made.
        if let Err(e) = self.announce6(&plan) {
            stop_at_once(qemu);
            return Err(e);
        }
        // Closed while QEMU starts, where its wait for the kernel delays nothing.
        drop(raw_probe);
        Ok(qemu)
    }

    /// The last phase: QEMU started with the plan's NICs on `netdevs` (the taps, held open
    /// until QEMU has its copies, or passt's sockets), or the debug shell exec'd.
    fn launch(
        &mut self,
        plan: &Plan,
        netdevs: Vec<qemu::Netdev>,
        taps: Vec<Tap>,
        accel: Accelerator,
        seed: Option<&Path>,
        console_tcp: Option<std::net::Ipv4Addr>,
    ) -> Result<Pid> {
        let nics: Vec<qemu::GuestNic> = plan
            .nics
            .iter()
            .zip(netdevs)
            .map(|(n, netdev)| qemu::GuestNic {
                slot: n.slot,
                // slirp's own MTU is 1500: a larger one would be the guest's alone.
                mtu: match netdev {
                    qemu::Netdev::Slirp(_) => n.mtu.min(1500),
                    _ => n.mtu,
                },
                netdev,
                mac: n.mac,
            })
            .collect();
        let argv = self.qemu_argv(&nics, accel, seed, console_tcp);
        self.check_not_interrupted()?;
        if let Some(shell) = self.checked.shell.clone() {
            self.hand_over(plan)?;
            return Err(self.exec_shell(&shell, &argv));
        }
        self.start_qemu(&argv, taps)
    }

    /// Before anything changes: the IPv6 announcements need packet sockets.
    /// Whether the IPv6 announcements' packet sockets can be had, before any change; the
    /// probe's socket is kept until QEMU runs (see [`PacketSocket::probe`]).
    fn check_packet_sockets(&self, plan: &Plan) -> Result<Option<OwnedFd>> {
        if !self.config.dhcp || plan.v6.is_empty() {
            return Ok(None);
        }
        PacketSocket::probe()
            .map(Some)
            .map_err(gateway6::raw_socket_error)
    }

    /// Opens the doors' packet sockets for the guest's IPv6 announcements (router
    /// advertisements, DHCPv6), finds the IPv6 gateways' link-local addresses and MACs on
    /// the container NICs (up to `gateway6::TIMEOUT`; a request to stop ends the wait, and the
    /// supervisor then stops the guest), and makes the announcers the supervisor serves.
    fn announce6(&mut self, plan: &Plan) -> Result<()> {
        if !self.config.dhcp || plan.v6.is_empty() {
            return Ok(());
        }
        let state = self.discover()?;
        let listening = Listening::open(&plan.v6, &state)?;
        let signals = self.signals;
        let learned = gateway6::learn(&state, &plan.v6, &|| stop_waiting(signals))?;
        let resolv = fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default();
        let dns = Dns6::from_resolv_conf(&resolv);
        let dns4 = dhcp_server::guest_dns(self.config).left_to_ipv6(&plan.nics);
        let mut announcers = Announcers::none();
        announcers.start(listening, &learned, (&dns, dns4));
        self.announcers = Some(announcers);
        Ok(())
    }

    /// Puts back NICs that an earlier, killed vminit left taken over. Returns the state
    /// when nothing needed recovery (the usual case), to plan from.
    fn recover(&mut self) -> Result<Option<NetState>> {
        let state = self.discover()?;
        let recovery = identity::recovery(&state);
        for warning in &recovery.warnings {
            log::warn!("{warning}");
        }
        if recovery.steps.is_empty() {
            return Ok(Some(state));
        }
        log::info!("recovering the network left by an earlier run");
        Applier::new(&mut self.nl).run_best_effort(&recovery.steps);
        Ok(None)
    }

    fn discover(&mut self) -> Result<NetState> {
        read_namespace(&mut self.nl)
    }

    /// Refuses more NICs than the guest has PCI slots for, counting what else takes slots.
    fn check_slots(&self, plan: &Plan) -> Result<()> {
        let slots = qemu::SlotUse {
            extra_disks: self.checked.media.extra_disks.len(),
            seed: self.checked.seed.is_some(),
            q35: self.config.machine.boot_mode.q35(),
            usb: self.config.display.is_some(),
        };
        let max = slots.max_nics();
        let nic_slots: Vec<Slot> = plan.nics.iter().map(|n| n.slot).collect();
        let places = qemu::nic_places(slots.q35, &nic_slots);
        if places > max {
            let mut describe = slots.describe();
            if places > nic_slots.len() {
                describe += &format!(
                    "; the NICs kept their places from the run before, which reach {places}"
                );
            }
            return Err(Error::Network(NetworkError::TooManyNics(
                plan.nics.len(),
                max,
                describe,
            )));
        }
        Ok(())
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
                selected_network6: self.config.selected_network6,
                state: &state,
                random_macs: &random,
                datapath: self.checked.datapath,
            });
            if let Ok(plan) = &result {
                for warning in &plan.warnings {
                    log::warn!("{warning}");
                }
            }
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

    /// Writes the cloud-init seed's files (meta-data, user-data, and a network-config that
    /// states what DHCP gives each NIC) where QEMU presents them as the `cidata` disk.
    fn write_seed(&self, plan: &Plan) -> Result<Option<PathBuf>> {
        let Some(seed) = &self.checked.seed else {
            return Ok(None);
        };
        let dns = dhcp_server::guest_dns(self.config);
        let mut nics = dnsmasq::seed_nics(&plan.nics, &dns, self.config.dhcp);
        let resolv = fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default();
        announce::add_seed6(&mut nics, &plan.v6, &Dns6::from_resolv_conf(&resolv));
        let dir = self.run_dir.seed();
        let files = [
            ("meta-data", seed::meta_data(seed).into_bytes()),
            ("user-data", seed::user_data(seed)),
            ("network-config", seed::network_config(&nics).into_bytes()),
        ];
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| Error::os(format!("create {}", dir.display()), e))?;
        for (name, bytes) in files {
            let path = dir.join(name);
            fs::write(&path, bytes)
                .map_err(|e| Error::os(format!("write {}", path.display()), e))?;
        }
        log::info!(
            "wrote the cloud-init seed {} (instance-id {}, hostname {})",
            dir.display(),
            seed.instance_id,
            seed.hostname
        );
        Ok(Some(dir))
    }

    /// The KVM probe (a VM, a vCPU, three instructions: about 1.5 ms with its teardown) runs
    /// in a thread beside the discovery and the guest links; its verdict is needed only for
    /// QEMU's command line, and its VM is torn down once the probe is dropped (`KvmProbe`).
    fn start_kvm_probe(&self) -> Option<KvmProbe> {
        (self.config.accel != Accel::Tcg).then(|| {
            let dev = self.config.paths.dev.clone();
            let (verdict, verdict_rx) = mpsc::channel();
            let (release, released) = mpsc::channel::<()>();
            std::thread::spawn(move || {
                let mut vm = ProbeVm::default();
                let _ = verdict.send(devices::probe_kvm(&dev, &mut vm));
                // Returns once the setup drops the release; then `vm` is torn down.
                let _ = released.recv();
            });
            KvmProbe {
                verdict: verdict_rx,
                _release: release,
            }
        })
    }

    /// The accelerator: KVM only when the probe guest ran on it.
    fn choose_accelerator(&self, probe: Option<&KvmProbe>) -> Result<Accelerator> {
        let kvm = probe.map(|p| p.verdict.recv().expect("the KVM probe does not panic"));
        Ok(report(accel::choose_accelerator(self.config.accel, kvm)?))
    }

    /// dnsmasq, spawned once QEMU runs and before the takeover's steps (see `hand_over`).
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
        let text = fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default();
        let ipv6 = announce::announced_servers(&plan.v6, &Dns6::from_resolv_conf(&text));
        let dns = dhcp_server::guest_dns(self.config);
        if let Some(warning) = dns.no_resolver(&resolv::parse(&text), &plan.nics, &ipv6) {
            log::warn!("{warning}");
        }
        self.dnsmasq = Some(server.spawn()?);
        self.dhcp = Some(server);
        Ok(())
    }

    /// swtpm starts before the network changes and listens before this returns.
    fn start_tpm(&mut self) -> Result<()> {
        if let Some(state) = &self.checked.media.tpm_state {
            let socket = self.run_dir.tpm_socket();
            let pid = tpm::start(self.config, state, &socket, self.signals.original)?;
            self.tpm = Some(pid);
        }
        Ok(())
    }

    fn wait_for_dnsmasq(&self) -> Result<()> {
        match (&self.dhcp, self.dnsmasq) {
            (Some(server), Some(pid)) => server.wait_ready(pid, &|| interrupted(self.signals)),
            _ => Ok(()),
        }
    }

    /// Makes each NIC's guest link (the plan's `make` steps), NIC by NIC, and opens its
    /// /dev/tapN (or takes its tap) for QEMU: nothing of the container's changes yet.
    fn make_guest_links(&mut self, plan: &Plan) -> Result<Vec<Tap>> {
        let mut applier = Applier::new(&mut self.nl);
        applier.pause_after(self.config.pause.filter(|p| matches!(p, Pause::Setup(_))));
        let mut taps = Vec::new();
        for (nic, steps) in plan.per_nic() {
            let (taken, tap) =
                take_over_nic(self.config, &self.checked, &mut applier, nic, steps.make);
            if let Some(taken) = taken {
                self.nics.push(taken);
            }
            taps.push(tap?);
        }
        Ok(taps)
    }

    /// What the guest needs once it has booted, had while QEMU starts (or before the debug
    /// shell): dnsmasq started, the takeover, dnsmasq waited for (it loads and binds while
    /// the takeover runs, and picks up the doors as they appear). In user mode, where nothing
    /// is taken over and passt serves, nothing.
    fn hand_over(&mut self, plan: &Plan) -> Result<()> {
        if self.checked.datapath == Datapath::User {
            return Ok(());
        }
        self.start_dnsmasq(plan)?;
        self.take_over(plan)?;
        self.wait_for_dnsmasq()
    }

    /// The takeover itself (the plan's `take` steps), NIC by NIC, of every NIC whose guest
    /// link `make_guest_links` made: it runs while QEMU starts (a guest sends nothing before
    /// its firmware and kernel have run), or before the debug shell. On a failure the NIC
    /// at fault is rolled back, and the caller puts back the others.
    fn take_over(&mut self, plan: &Plan) -> Result<()> {
        let mut applier = Applier::new(&mut self.nl);
        applier.pause_after(self.config.pause.filter(|p| matches!(p, Pause::Setup(_))));
        applier.count_applied(self.nics.all().map(|t| t.steps.len()).sum());
        for (nic, steps) in plan.per_nic() {
            let Some(taken) = self.nics.get_mut(&nic.lower) else {
                continue;
            };
            applier.apply_all(steps.take)?;
            taken.steps.extend(applier.take_applied());
        }
        Ok(())
    }

    /// QEMU's command line: the guest's NICs, the seed, the display (VNC also on
    /// `console_tcp`), then CMD's arguments.
    fn qemu_argv(
        &self,
        nics: &[qemu::GuestNic],
        accel: Accelerator,
        seed: Option<&Path>,
        console_tcp: Option<std::net::Ipv4Addr>,
    ) -> Vec<OsString> {
        let extra: &[OsString] = match &self.config.command {
            Command::Boot(args) => args,
            _ => &[],
        };
        let display = display::qemu_args(
            self.config.display.as_ref(),
            &self.run_dir.vnc_password(),
            console_tcp,
        );
        let disk = self.checked.media.disk.raw_fds();
        let tpm_socket = self.tpm.map(|_| self.run_dir.tpm_socket());
        let efi = (self.checked.media.efi.as_ref()).map(|(code, vars)| (code, devices::raw(vars)));
        let extra_disks: Vec<_> = (self.checked.media.extra_disks.iter())
            .map(|d| d.raw_fds())
            .collect();
        let iso = (self.checked.media.iso.as_ref())
            .map(|(iso, new)| (devices::raw(iso), machine::boot_order(*new)));
        qemu::argv(&qemu::QemuInput {
            qemu: &self.config.paths.qemu,
            accel,
            vhost: self.checked.vhost,
            ram: &self.config.ram,
            cpus: self.config.cpus,
            disk: &disk,
            extra_disks: &extra_disks,
            cdrom: iso.as_ref().map(|(file, boot)| (file, *boot)),
            nic_model: self.config.machine.nic_model,
            tpm: tpm_socket.as_deref(),
            uefi: efi.as_ref().map(|(code, vars)| qemu::Uefi {
                code,
                vars,
                secure: self.config.machine.boot_mode == machine::BootMode::Secure,
            }),
            sandbox: self.config.qemu_sandbox,
            qmp: &self.run_dir.qmp(),
            health: &self.run_dir.health(),
            nics,
            display: &display,
            seed,
            extra,
        })
    }

    /// A `docker stop` during setup ends it here, before the guest starts.
    /// Grows the disk as `DISK_SIZE` asks, once every check has passed: the first change
    /// to what the user brought (a disk vminit made is removed again on a refusal, a grown
    /// one could not be shrunk back).
    fn grow_disk(&self) -> Result<()> {
        let media = &self.checked.media;
        let Some(growth) = &media.growth else {
            return Ok(());
        };
        let watch = provision::Watch {
            mask: self.signals.original,
            interrupted: &|| termination_pending(self.signals),
        };
        provision::grow_disk(self.config, &media.disk, growth, &watch)
    }

    fn check_not_interrupted(&self) -> Result<()> {
        interrupted(self.signals)
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

    fn start_qemu(&mut self, argv: &[OsString], taps: Vec<Tap>) -> Result<Pid> {
        log::info!("starting {}", slirp::abbreviate(&qemu::shell_line(argv)));
        let mut keep: Vec<RawFd> = taps.iter().flat_map(Tap::raw_fds).collect();
        keep.extend(self.checked.media.fds());
        let options = spawn::SpawnOptions {
            mask: self.signals.original,
            keep: &keep,
            own_group: false,
            drop_privileges: self.config.qemu_caps == config::QemuCaps::Drop,
        };
        let qemu = spawn::spawn(argv, &options)?;
        log::info!("QEMU started, pid {qemu}");
        // QEMU has its own copies of the tap and disk fds; a restarted dnsmasq must not
        // inherit ours.
        drop(taps);
        self.checked.media.close_files();
        Ok(qemu)
    }
}

/// The KVM probe, running beside the setup: its verdict, and its VM held until the setup
/// drops the probe once QEMU has been spawned. The VM's teardown is half the probe's time,
/// and beside the first macvtap's creation it cost the setup about 1.1 ms (bench, 2 NICs).
struct KvmProbe {
    verdict: mpsc::Receiver<KvmStatus>,
    /// Dropped with the probe: the probe thread then tears its VM down and ends.
    _release: mpsc::Sender<()>,
}

/// Hands one NIC over (its steps, then its /dev/tapN opened): what was done, to undo later
/// (`None` when nothing stayed done: a failed step rolls its NIC back), and the open tap.
fn take_over_nic(
    config: &Config,
    checked: &Checked,
    applier: &mut Applier<Netlink>,
    nic: &NicPlan,
    steps: &[Step],
) -> (Option<TakenNic>, Result<Tap>) {
    let queues = config.machine.nic_model.queues(config.nic_queues);
    applier.tun_device(&tun_device(config), queues);
    if let Err(e) = applier.apply_all(steps) {
        return (None, Err(e));
    }
    let mut taken = TakenNic {
        nic: nic.clone(),
        steps: applier.take_applied(),
        node: None,
        held: None,
        pending: None,
        guest6: None,
    };
    let paths = &config.paths;
    let tap = match nic.datapath {
        // User mode takes nothing over: it never gets here.
        Datapath::Macvtap | Datapath::User => {
            let tap = applier.index_of(&nic.tap).and_then(|index| {
                devices::open_tap(
                    &paths.sys_class_net,
                    &paths.dev,
                    &nic.tap,
                    index,
                    checked.tap_major,
                    queues,
                )
            });
            taken.node = tap.as_ref().ok().map(|t| t.path.clone());
            tap
        }
        Datapath::Tap => {
            let first = applier
                .take_tap(&nic.tap)
                .expect("the takeover's AddTap step made it");
            let tun_path = tun_device(config);
            let held = first
                .try_clone()
                .map_err(|e| Error::os(format!("duplicate the descriptor of {}", nic.tap), e));
            // The step made the tap with its first queue; each more descriptor is one more.
            let more = (1..queues).map(|q| {
                tun::open_tap(&tun_path, &nic.tap, true)
                    .map_err(|e| Error::os(format!("open queue {q} of {}", nic.tap), e))
            });
            held.and_then(|held| {
                taken.held = Some(held);
                let fds = std::iter::once(Ok(first))
                    .chain(more)
                    .collect::<Result<_>>()?;
                Ok(Tap {
                    path: tun_device(config),
                    fds,
                })
            })
        }
    };
    (Some(taken), tap)
}

/// Ends a QEMU that has just started, before its guest could do anything: SIGKILL, reaped.
fn stop_at_once(qemu: Pid) {
    let _ = nix::sys::signal::kill(qemu, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(qemu, None);
}

/// The namespace as it is now.
fn read_namespace(nl: &mut Netlink) -> Result<NetState> {
    discover::read(nl).map_err(|e| Error::os("read the network configuration", e))
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

/// The run directory: made with mode 0700 when missing. One that exists is used as it is,
/// never chmod-ed (it may be `/`, or a user's); one that others may write to is refused:
/// anyone could put their own socket in QEMU's place.
fn make_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(Error::config(
                    "VMINIT_RUN_DIR",
                    format!(
                        "{} may be written by others (mode {:04o}); name a directory only root writes, or one that does not exist yet (vminit makes it 0700)",
                        dir.display(),
                        mode & 0o7777
                    ),
                ));
            }
            Ok(())
        }
        Ok(_) => Err(Error::config(
            "VMINIT_RUN_DIR",
            format!("{} is not a directory", dir.display()),
        )),
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::os(format!("create {}", dir.display()), e)),
    }
}

/// Refuses a `RAM_SIZE` this host cannot give QEMU: under the kernel's default overcommit
/// rule, more than its memory and swap together, which QEMU fails to allocate at start.
fn check_ram(config: &Config) -> Result<()> {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let overcommit = fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    config::check_ram_fits(&config.ram, &meminfo, &overcommit)
        .map_err(|msg| Error::config("RAM_SIZE", msg))
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

/// `Interrupted` when a request to stop arrived while vminit was busy.
fn interrupted(signals: &Signals) -> Result<()> {
    match termination_pending(signals) {
        Some(sig) => Err(Error::Interrupted(sig)),
        None => Ok(()),
    }
}

/// Whether a request to stop waits to be read (left for the supervisor to read and act on).
fn stop_waiting(signals: &Signals) -> bool {
    signals
        .waiting()
        .into_iter()
        .any(|s| policy::is_stop_request(s) || policy::is_stop_now(s))
}

/// A request to stop (SIGTERM, SIGINT, SIGPWR, SIGRTMIN+3, SIGQUIT) that arrived while
/// vminit was busy.
fn termination_pending(signals: &Signals) -> Option<i32> {
    signals
        .pending()
        .into_iter()
        .find(|&s| policy::is_stop_request(s) || policy::is_stop_now(s))
}
