//! vminit as PID 1: signals, reaping, exit statuses, graceful shutdown, dnsmasq supervision,
//! restart in the same network namespace, and the guest's data.
//!
//! The first half drives a stand-in QEMU (tests/standin/qemu.sh) that records how it was
//! started and what it receives; the second half the real QEMU with the test guest.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Container, GuestReport, Network, Nic, ScratchDisk, Vminit, VminitBuilder, recorder, run,
    standin_script, standin_tool, test_guest, vminit_binary,
};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;

const BOOT: Duration = Duration::from_secs(120);

/// A container on one network, a scratch directory with a disk and the stand-in's log.
struct Fixture {
    net: Network,
    ctr: Container,
    nic: Nic,
    scratch: ScratchDisk,
}

impl Fixture {
    fn new() -> Fixture {
        let net = Network::new(1);
        let (ctr, nic) = Container::docker_on(&net);
        Fixture {
            net,
            ctr,
            nic,
            scratch: ScratchDisk::new(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.scratch.dir.join("standin.log")
    }

    /// What the stand-in recorded so far.
    fn standin_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the stand-in's log contains `pattern`.
    fn wait_standin(&self, pattern: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.standin_log().contains(pattern) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// vminit with the stand-in as QEMU, in `mode`.
    fn standin(&self, mode: &str) -> VminitBuilder<'_> {
        self.standin_on(self.base(), mode)
    }

    /// `builder` with the stand-in as QEMU, in `mode`.
    fn standin_on<'a>(&self, builder: VminitBuilder<'a>, mode: &str) -> VminitBuilder<'a> {
        builder
            .env("VMINIT_QEMU", recorder())
            .env("STANDIN_STUCK_QMP", standin_tool("stuck_qmp"))
            .env("STANDIN_SCRIPT", standin_script())
            .env("STANDIN_MODE", mode)
            .env("STANDIN_LOG", self.log_path())
            .env("STOP_TIMEOUT", "1")
    }

    /// vminit booting the test guest.
    fn guest(&self, cmdline: &str) -> VminitBuilder<'_> {
        self.base().args(test_guest().qemu_args(cmdline))
    }

    fn base(&self) -> VminitBuilder<'_> {
        self.ctr
            .vminit(&vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "256M")
            .env("VMINIT_DISK", &self.scratch.path)
    }
}

/// Waits for vminit to exit and checks its status.
fn expect_code(vm: &Vminit, status: i32, timeout: Duration) {
    let code = vm.expect_exit(timeout).code();
    assert_eq!(code, Some(status), "exit status\n{}", vm.tails());
}

// ---- the stand-in QEMU ----

#[test]
fn qemus_exit_code_becomes_vminits() {
    for status in [0, 1, 3, 255] {
        let f = Fixture::new();
        let vm = f.standin(&format!("exit:{status}")).spawn();
        expect_code(&vm, status, Duration::from_secs(20));
    }
}

#[test]
fn a_qemu_killed_by_a_signal_gives_128_plus_its_number() {
    for (sig, status) in [("KILL", 137), ("SEGV", 139), ("ABRT", 134)] {
        let f = Fixture::new();
        let vm = f.standin(&format!("signal:{sig}")).spawn();
        expect_code(&vm, status, Duration::from_secs(20));
    }
}

#[test]
fn qemu_starts_with_an_empty_signal_mask_and_only_its_tap_descriptors() {
    let f = Fixture::new();
    let vm = f.standin("wait").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    let log = f.standin_log();
    assert!(
        log.contains("SigBlk:\t0000000000000000"),
        "mask restored:\n{log}"
    );
    // Dispositions are vminit's original ones: what it inherited, without the SIGPIPE that
    // Rust's runtime ignores in vminit itself.
    let status = std::fs::read_to_string(format!("/proc/{}/status", vm.pid())).expect("status");
    let ignored = |text: &str| {
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .expect("SigIgn");
        u64::from_str_radix(hex.trim(), 16).expect("hex")
    };
    const SIGPIPE_BIT: u64 = 1 << (13 - 1);
    assert_eq!(
        ignored(&log),
        ignored(&status) & !SIGPIPE_BIT,
        "SigIgn\n{log}"
    );
    assert_eq!(ignored(&log) & SIGPIPE_BIT, 0, "SIGPIPE back to default");
    // The tap fd named on the command line is open, a character device node under /dev.
    let argv = log
        .lines()
        .find(|l| l.starts_with("argv "))
        .expect("argv recorded");
    let fd = argv
        .split("tap,id=net0,fd=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("a -netdev tap,fd=N argument");
    let tap = format!("fd {fd} /dev/tap");
    assert!(log.contains(&tap), "{tap:?} in\n{log}");
    // The disk is descriptors too, each named on the command line (`-add-fd fd=N,...`).
    let disk_fds: Vec<u32> = argv
        .split("-add-fd fd=")
        .skip(1)
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect();
    assert_eq!(
        disk_fds.len(),
        2,
        "the disk read-only and read-write: {argv}"
    );
    // Nothing else of vminit's leaks: no signalfd, no netlink socket, no QMP socket, no lock.
    let fds: Vec<&str> = log.lines().filter(|l| l.starts_with("fd ")).collect();
    for line in &fds {
        let n: u32 = line
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("fd number");
        let disk = disk_fds.contains(&n) && line.ends_with(&*f.scratch.path.to_string_lossy());
        assert!(
            n <= 2 || line.contains("/dev/tap") || disk,
            "leaked descriptor: {line}"
        );
    }
    vm.kill(Signal::SIGKILL);
}

#[test]
fn orphans_are_reaped_however_their_exits_coalesce() {
    let f = Fixture::new();
    let vm = f.standin("orphans:100").spawn();
    expect_code(&vm, 0, Duration::from_secs(30));
    let log = f.standin_log();
    assert!(
        log.contains("zombies 0 sleepers 0"),
        "every orphan reaped:\n{log}"
    );
}

#[test]
fn hup_usr1_usr2_and_winch_are_not_passed_to_qemu() {
    let f = Fixture::new();
    let vm = f.standin("wait").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    for sig in [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        vm.kill(sig);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        vm.wait_exit(Duration::from_millis(10)).is_none(),
        "vminit still runs"
    );
    assert!(!f.standin_log().contains("received"), "{}", f.standin_log());
    vm.kill(Signal::SIGKILL);
}

#[test]
fn a_qemu_that_does_not_stop_is_killed_within_stop_timeout_plus_grace() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    let vm = f.standin("wait").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    // STOP_TIMEOUT=1: the stand-in has no QMP; vminit escalates to SIGKILL.
    expect_code(&vm, 137, Duration::from_secs(10));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
    assert!(
        !f.standin_log().contains("received TERM"),
        "SIGTERM is not passed on"
    );
    assert_eq!(f.ctr.net_state(), before, "the network is put back");
}

#[test]
fn a_second_sigterm_escalates_at_once() {
    let f = Fixture::new();
    let vm = f.standin("wait").env("STOP_TIMEOUT", "60").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    vm.kill(Signal::SIGTERM);
    vm.expect_log("power button", Duration::from_secs(5));
    let sent = Instant::now();
    vm.kill(Signal::SIGINT);
    expect_code(&vm, 137, Duration::from_secs(10));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
}

#[test]
fn sigterm_while_waiting_for_interfaces_ends_setup_with_nothing_changed() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    let vm = f
        .standin("wait")
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth0 eth5")
        .env("IFACE_WAIT", "60")
        .spawn();
    vm.expect_log("waiting up to", Duration::from_secs(10));
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 143, Duration::from_secs(5));
    assert!(!f.standin_log().contains("started"), "QEMU never started");
    assert_eq!(f.ctr.net_state(), before);
}

#[test]
fn a_dnsmasq_that_dies_is_restarted_while_qemu_keeps_running() {
    let f = Fixture::new();
    let vm = f.standin("wait").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    let dnsmasq = children_named(vm.pid(), "dnsmasq");
    assert_eq!(dnsmasq.len(), 1, "one dnsmasq child");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(dnsmasq[0]), Signal::SIGKILL);
    vm.expect_log("dnsmasq restarted", Duration::from_secs(10));
    let again = children_named(vm.pid(), "dnsmasq");
    assert_eq!(again.len(), 1, "a new dnsmasq");
    assert_ne!(again, dnsmasq);
    assert!(
        vm.wait_exit(Duration::from_millis(10)).is_none(),
        "vminit still runs"
    );
    assert!(!f.standin_log().contains("received"), "QEMU undisturbed");
    vm.kill(Signal::SIGKILL);
}

#[test]
fn sigpwr_and_sigrtmin_3_stop_the_guest_like_sigterm() {
    // Numbers as systemd and Docker count them: SIGPWR is 30, SIGRTMIN+3 is 34 + 3.
    for (signo, name) in [(30, "SIGPWR"), (37, "SIGRTMIN+3")] {
        let f = Fixture::new();
        let before = f.ctr.net_state();
        let vm = f.standin("wait").spawn();
        assert!(
            f.wait_standin("started", Duration::from_secs(20)),
            "{}",
            vm.tails()
        );
        let sent = run(&["kill", &format!("-{signo}"), &vm.pid().to_string()]);
        assert!(sent.success(), "{sent}");
        vm.expect_log(&format!("received {name}"), Duration::from_secs(5));
        vm.expect_log("pressing the guest's power button", Duration::from_secs(5));
        // The stand-in has no QMP: after STOP_TIMEOUT=1, vminit stops it.
        expect_code(&vm, 137, Duration::from_secs(10));
        assert_eq!(f.ctr.net_state(), before, "the network is put back");
    }
}

#[test]
fn a_qemu_whose_qmp_never_accepts_is_still_stopped_within_dockers_ten_seconds() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    // The default STOP_TIMEOUT, the one Docker's 10 s stop timeout must cover.
    let vm = f.standin("qmp-stuck").env("STOP_TIMEOUT", "8").spawn();
    assert!(
        f.wait_standin("qmp /run/vminit/qmp.sock", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    // Each press waits for a QMP greeting that never comes; once the listen queue (backlog
    // 1) is full, connect() itself would wait forever without a deadline.
    expect_code(&vm, 137, Duration::from_secs(30));
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}\n{}",
        vm.tails()
    );
    let log = vm.log().text();
    assert!(log.contains("QMP system_powerdown:"), "{log}");
    assert!(log.contains("sending SIGKILL"), "{log}");
    assert_eq!(f.ctr.net_state(), before, "the network is put back");
}

#[test]
fn a_second_vminit_in_the_namespace_changes_nothing_and_exits_75() {
    let f = Fixture::new();
    let vm = f.standin("wait").spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    // New links settle their operational state within a second (the kernel's link watch).
    std::thread::sleep(Duration::from_secs(2));
    let taken_over = f.ctr.net_state();
    // `docker exec vm /vminit sh`: every namespace of the running container.
    let disk = format!("VMINIT_DISK={}", f.scratch.path.display());
    let binary = vminit_binary();
    let second = vm.exec_inside(&[
        "env",
        "-i",
        "AUTO_ATTACH=yes",
        "ACCEL=tcg",
        &disk,
        &binary.to_string_lossy(),
        "sh",
    ]);
    assert_eq!(second.status.code(), Some(75), "{second}");
    let errors: Vec<&str> = second
        .stderr
        .lines()
        .filter(|l| l.starts_with("vminit: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{second}");
    assert!(
        errors[0].contains("another vminit already runs"),
        "{second}"
    );
    assert_eq!(
        f.ctr.net_state(),
        taken_over,
        "the running guest's network is untouched"
    );
    // A Kubernetes container restart while the old one still runs: same network namespace,
    // new filesystem and pid namespace.
    let restart = f.base().env("VMINIT_QEMU", "/bin/false").spawn();
    let code = restart.expect_exit(Duration::from_secs(10)).code();
    assert_eq!(code, Some(75), "{}", restart.tails());
    assert_eq!(f.ctr.net_state(), taken_over);
    assert!(
        vm.wait_exit(Duration::from_millis(10)).is_none(),
        "the first still runs"
    );
    assert!(!f.standin_log().contains("received"), "QEMU undisturbed");
    // Once the first is killed, its lock is gone with it: a restart proceeds.
    vm.kill(Signal::SIGKILL);
    vm.expect_exit(Duration::from_secs(10));
    drop(vm);
    let next = f.standin("wait").spawn();
    next.expect_log("QEMU running", Duration::from_secs(20));
    next.kill(Signal::SIGKILL);
}

#[test]
fn no_descriptor_leaks_into_qemu_or_dnsmasq_even_when_close_range_fails() {
    // `none`: close_range works; ENOSYS: a kernel before 5.9; EPERM: the seccomp profile of
    // an older container runtime.
    for errno in ["none", "ENOSYS", "EPERM"] {
        let f = Fixture::new();
        let canary = f.scratch.dir.join("inherited-canary");
        std::fs::write(&canary, b"").expect("write the canary");
        let wrapper = standin_tool("no_close_range");
        let vm = f
            .standin("wait")
            .wrapped_by(&[wrapper.as_os_str(), errno.as_ref()])
            .env("CANARY", &canary)
            .spawn();
        assert!(
            f.wait_standin("started", Duration::from_secs(20)),
            "{errno}\n{}",
            vm.tails()
        );
        let canary = canary.to_string_lossy().into_owned();
        let holds_canary = |pid: i32| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten().any(|e| {
                        std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == canary)
                    })
                })
                .unwrap_or(false)
        };
        assert!(
            holds_canary(vm.pid()),
            "{errno}: vminit itself inherited it"
        );
        let log = f.standin_log();
        assert!(log.contains("/dev/tap"), "{errno}: QEMU got its tap\n{log}");
        assert!(!log.contains(&canary), "{errno}: leaked into QEMU\n{log}");
        let dnsmasq = children_named(vm.pid(), "dnsmasq");
        assert_eq!(dnsmasq.len(), 1, "{errno}: one dnsmasq");
        assert!(!holds_canary(dnsmasq[0]), "{errno}: leaked into dnsmasq");
        vm.kill(Signal::SIGKILL);
    }
}

#[test]
fn a_restarted_dnsmasq_that_never_serves_is_reaped_and_holds_up_nothing() {
    let f = Fixture::new();
    // The first start is the real dnsmasq; every later one hangs without serving.
    let fake = f.scratch.dir.join("dnsmasq");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ -e \"$FAKE_DNSMASQ_MARK\" ]; then exec sleep 1000; fi\n: > \"$FAKE_DNSMASQ_MARK\"\nexec /usr/sbin/dnsmasq \"$@\"\n",
    )
    .expect("write the fake dnsmasq");
    run(&["chmod", "755", &fake.to_string_lossy()]);
    let vm = f
        .standin("wait")
        .env("VMINIT_DNSMASQ", &fake)
        .env("FAKE_DNSMASQ_MARK", f.scratch.dir.join("dnsmasq-started"))
        .spawn();
    assert!(
        f.wait_standin("started", Duration::from_secs(20)),
        "{}",
        vm.tails()
    );
    let real = children_named(vm.pid(), "dnsmasq");
    assert_eq!(real.len(), 1, "{}", vm.tails());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(real[0]), Signal::SIGKILL);
    let restarted = vm.expect_log("dnsmasq restarted", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    let hung = loop {
        let sleeps = children_named(vm.pid(), "sleep");
        if let [pid] = sleeps[..] {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the fake never ran\n{}",
            vm.tails()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Given up after its start timeout, killed and reaped (not a zombie, not left running).
    vm.expect_log("did not serve within", Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{hung}")).exists() {
        assert!(
            Instant::now() < deadline,
            "pid {hung} left behind\n{}",
            vm.tails()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next attempt hangs as well; a `docker stop` meanwhile is acted on at once.
    let again = vm
        .log()
        .wait_for_from(restarted.end, "dnsmasq restarted", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no second restart\n{}", vm.tails()));
    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    vm.log()
        .wait_for_from(
            again.end,
            "pressing the guest's power button",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no power button\n{}", vm.tails()));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "SIGTERM waited {:?} for dnsmasq",
        sent.elapsed()
    );
    expect_code(&vm, 137, Duration::from_secs(10));
}

/// Host pids of `pid`'s children whose command is `name`.
fn children_named(pid: i32, name: &str) -> Vec<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .map(|s| s.trim() == name)
                .unwrap_or(false)
        })
        .collect()
}

// ---- the real guest ----

fn report(vm: &Vminit, from: usize) -> GuestReport {
    vm.expect_console_from(from, "GUEST-REPORT done", BOOT);
    GuestReport::parse(&vm.console().text()[from..]).expect("a complete guest report")
}

#[test]
fn docker_stop_presses_the_power_button_and_the_guest_powers_off_cleanly() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    let vm = f.guest("").spawn();
    vm.expect_console("GUEST-READY", BOOT);
    // A Ctrl-C typed on the console reaches the guest's shell, not QEMU.
    vm.type_console("sleep 1000\n");
    std::thread::sleep(Duration::from_millis(500));
    let from = vm.console().len();
    vm.type_console("\x03echo AFTER-CTRL-C\n");
    vm.expect_console_from(from, "AFTER-CTRL-C", Duration::from_secs(20));

    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(30));
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "within STOP_TIMEOUT: {:?}",
        sent.elapsed()
    );
    let console = vm.console().text();
    assert!(console.contains("GUEST-POWERBUTTON"), "{console}");
    let log = vm.log().text();
    assert!(log.contains("pressing the guest's power button"), "{log}");
    assert!(log.contains("exited: exit code 0"), "{log}");
    // vminit's log stays off the console.
    assert!(!console.contains("vminit:"), "{console}");
    assert_eq!(f.ctr.net_state(), before);
}

#[test]
fn a_guest_that_ignores_the_power_button_is_stopped_within_the_timeout_plus_two_seconds() {
    let f = Fixture::new();
    let vm = f
        .guest("vminit_test_ignore_powerbutton=1")
        .env("STOP_TIMEOUT", "3")
        .spawn();
    vm.expect_console("GUEST-READY", BOOT);
    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 137, Duration::from_secs(30));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    assert!(vm.console().text().contains("GUEST-POWERBUTTON-IGNORED"));
    assert!(vm.log().text().contains("QMP quit"), "{}", vm.tails());
}

#[test]
fn what_the_guest_wrote_before_docker_stop_is_on_the_disk_at_the_next_boot() {
    let f = Fixture::new();
    let vm = f.guest("vminit_test_write=kept-across-stop").spawn();
    vm.expect_console("GUEST-DISK-WRITTEN kept-across-stop", BOOT);
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(30));
    drop(vm);
    let vm = f.guest("").spawn();
    vm.expect_console("GUEST-DISK kept-across-stop", BOOT);
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(30));
}

#[test]
fn a_run_after_sigkill_in_the_same_namespace_recovers_the_identity_and_the_disk_is_sound() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    let vm = f.guest("vminit_test_write=before-the-kill").spawn();
    vm.expect_console("GUEST-DISK-WRITTEN before-the-kill", BOOT);
    // A Kubernetes container restart: SIGKILL, the pod's network namespace stays.
    vm.kill(Signal::SIGKILL);
    vm.expect_exit(Duration::from_secs(10));
    drop(vm);
    assert_ne!(f.ctr.net_state(), before, "the killed run left its changes");
    let check = run(&["qemu-img", "check", &f.scratch.path.to_string_lossy()]);
    assert!(check.success(), "qemu-img check after SIGKILL: {check:?}");

    let vm = f.guest("").spawn();
    let r = report(&vm, 0);
    assert!(
        vm.log()
            .text()
            .contains("recovering the network left by an earlier run")
    );
    assert!(!vm.log().text().contains("File exists"), "{}", vm.tails());
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(
        (&g.mac, &g.addrs),
        (&f.nic.mac, &f.nic.addrs),
        "same identity"
    );
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", f.net.gateway)]
    );
    assert!(f.net.peer_ping(f.nic.ip()), "{}", vm.tails());
    assert_eq!(
        f.net.peer_neighbour_mac(f.nic.ip()).as_deref(),
        Some(f.nic.mac.as_str())
    );
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(30));
    assert_eq!(f.ctr.net_state(), before, "all put back after a clean stop");
}

#[test]
fn the_debug_shell_runs_the_prepared_qemu_command_and_the_guest_gets_the_nic() {
    let f = Fixture::new();
    let vm = f.base().arg("sh").spawn();
    vm.expect_log(
        "debug mode: run `sh /run/vminit/qemu.sh`",
        Duration::from_secs(20),
    );
    assert!(
        !vm.log().text().contains("QEMU running"),
        "vminit itself starts no QEMU"
    );
    // The shell (PID 1 now) runs the prepared command line; extra arguments are appended.
    let guest = test_guest().qemu_args("");
    let quoted: Vec<String> = guest.iter().map(|a| format!("'{a}'")).collect();
    vm.type_console(&format!("sh /run/vminit/qemu.sh {}\n", quoted.join(" ")));
    let r = report(&vm, 0);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(
        (&g.mac, &g.addrs),
        (&f.nic.mac, &f.nic.addrs),
        "the tap fds reached QEMU"
    );
    assert!(f.net.peer_ping(f.nic.ip()), "{}", vm.tails());
    vm.kill(Signal::SIGKILL);
}

#[test]
fn a_power_button_pressed_while_the_guest_still_boots_is_not_lost() {
    let f = Fixture::new();
    let before = f.ctr.net_state();
    // A generous timeout: this is about the press, not the budget.
    let vm = f.guest("").env("STOP_TIMEOUT", "60").spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));
    // The guest's kernel is not even running yet: ACPI does not listen. The first press is
    // taken by QEMU and lost; a later one reaches the guest's acpid.
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(90));
    let console = vm.console().text();
    assert!(console.contains("GUEST-POWERBUTTON"), "{console}");
    assert!(!vm.log().text().contains("QMP quit"), "{}", vm.tails());
    assert_eq!(f.ctr.net_state(), before);
}

/// The capability and sandbox lines of a process's /proc/PID/status.
fn privileges(pid: i32) -> BTreeMap<String, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| {
            [
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ]
            .contains(k)
        })
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// QEMU's host pid, once it runs.
fn qemu_pid(vm: &Vminit) -> i32 {
    vm.expect_log("QEMU running", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let [pid] = children_named(vm.pid(), "qemu-system-x86")[..] {
            return pid;
        }
        assert!(Instant::now() < deadline, "no QEMU child\n{}", vm.tails());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn qemu_holds_no_capability_under_its_seccomp_sandbox_and_the_guest_still_gets_its_network() {
    let f = Fixture::new();
    let vm = f.guest("").spawn();
    let qemu = qemu_pid(&vm);
    let r = report(&vm, 0);
    let zero = "0000000000000000";
    let held = privileges(qemu);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(held[set], zero, "{set}: {held:?}");
    }
    assert_eq!(held["NoNewPrivs"], "1", "{held:?}");
    assert_eq!(held["Seccomp"], "2", "seccomp filter mode: {held:?}");
    // vminit itself keeps the container's capabilities.
    assert_ne!(privileges(vm.pid())["CapEff"], zero);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(
        (&g.mac, &g.addrs),
        (&f.nic.mac, &f.nic.addrs),
        "{}",
        vm.tails()
    );
    assert!(f.net.peer_ping(f.nic.ip()), "{}", vm.tails());
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 0, Duration::from_secs(30));
}

#[test]
fn qemu_caps_keep_and_qemu_sandbox_off_leave_qemu_the_containers_privileges() {
    let f = Fixture::new();
    let vm = f
        .guest("")
        .env("QEMU_CAPS", "keep")
        .env("QEMU_SANDBOX", "off")
        .spawn();
    let qemu = qemu_pid(&vm);
    let held = privileges(qemu);
    assert_eq!(held["CapEff"], privileges(vm.pid())["CapEff"], "{held:?}");
    assert_eq!(held["NoNewPrivs"], "0", "{held:?}");
    assert_eq!(held["Seccomp"], "0", "{held:?}");
    assert!(!vm.log().text().contains("-sandbox"), "{}", vm.tails());
    vm.kill(Signal::SIGKILL);
}

#[test]
fn a_qemu_held_up_by_a_serial_server_waiting_for_its_client_is_stopped_within_dockers_ten_seconds()
{
    let f = Fixture::new();
    let before = f.ctr.net_state();
    // QEMU waits for a client on 127.0.0.1:4444 before its main loop runs: its QMP socket
    // listens, and nothing accepts.
    let vm = f
        .guest("")
        .args(["-serial", "tcp:127.0.0.1:4444,server=on,wait=on"])
        .env("STOP_TIMEOUT", "8")
        .spawn();
    vm.expect_log("waiting for connection", Duration::from_secs(30));
    let sent = Instant::now();
    vm.kill(Signal::SIGTERM);
    expect_code(&vm, 137, Duration::from_secs(30));
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}\n{}",
        vm.tails()
    );
    assert_eq!(f.ctr.net_state(), before);
}
