//! Runs a binary the way Docker runs a container's PID 1, inside a [`Container`]'s network
//! namespace, with the console on pipes the test reads and writes.
//!
//! PID 1 is a direct child of the test process, so the test reaps it and sees its true exit
//! status (`unshare --fork` would stand in between and report a SIGKILL as exit code 1). A helper
//! thread calls `unshare(CLONE_NEWPID)` (which only affects the children it creates afterwards) and
//! spawns the chain below, in which each arrow is an `exec`, so one process, PID 1 of the new pid
//! namespace from its first instruction, runs it all:
//!
//! ```text
//! setpriv --pdeathsig KILL            killed when the helper thread ends (at drop, or if
//!                                     the test process dies)
//!  → ip netns exec NS                 joins the container's netns, mounts its /sys
//!  → unshare --mount --uts --mount-proc   private mounts, own hostname, /proc of the new pid ns
//!  → sh -c SETUP                      mounts /dev, /run, /etc/resolv.conf …, sets the hostname
//!  → [setpriv --bounding-set DOCKER_CAPS]
//!  → BINARY ARGS…                     PID 1: signals the test sends land on the binary
//! ```
//!
//! Its host pid is the spawned child's pid. [`VminitBuilder::spawn`] returns once that process
//! has exec'd the binary (a marker file the setup writes exists and `/proc/<pid>/cmdline` starts
//! with the binary's path), so a signal never hits the setup shell instead.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use super::cmd::{CmdOutput, run};
use super::container::Container;
use super::names::unique_id;
use super::process::{Capture, Match, Process};

/// The capabilities Docker gives a container by default, plus `NET_ADMIN` (`--cap-add
/// NET_ADMIN`, which vminit's users must pass).
const DOCKER_CAPS: &[&str] = &[
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "sys_chroot",
    "mknod",
    "audit_write",
    "setfcap",
    "net_admin",
];

/// The vminit binary under test: `$VMINIT_BIN` (e.g. the static musl build named in
/// the README), else the build cargo made for this test run.
pub fn vminit_binary() -> PathBuf {
    std::env::var_os("VMINIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vminit")))
}

/// The QEMU the tests give vminit: `$VMINIT_TEST_QEMU` (e.g. the one image/build-qemu.sh built,
/// which the image ships), else none, and vminit takes its default (Debian's
/// /usr/bin/qemu-system-x86_64). A test that sets `VMINIT_QEMU` itself keeps its own.
pub fn test_qemu() -> Option<OsString> {
    test_program("VMINIT_TEST_QEMU")
}

/// The qemu-img of the same build as [`test_qemu`]'s QEMU (the `qemu-img` beside it, which
/// image/build-qemu.sh puts there and the image ships), given to vminit as `VMINIT_QEMU_IMG`;
/// none when there is no such file, and vminit takes Debian's /usr/bin/qemu-img.
pub fn test_qemu_img() -> Option<OsString> {
    let img = PathBuf::from(test_qemu()?).with_file_name("qemu-img");
    img.is_file().then(|| img.into_os_string())
}

/// The dnsmasq the tests give vminit, as [`test_qemu`]: `$VMINIT_TEST_DNSMASQ` (the one
/// image/build-dnsmasq.sh built) as `VMINIT_DNSMASQ`, else vminit's default /usr/sbin/dnsmasq.
pub fn test_dnsmasq() -> Option<OsString> {
    test_program("VMINIT_TEST_DNSMASQ")
}

/// The OVMF the tests give vminit, as [`test_qemu`]: `$VMINIT_TEST_OVMF_DIR` (the image's
/// compressed copies, which image/build-ovmf.sh makes) as `VMINIT_OVMF_DIR`, else vminit's
/// default /usr/share/OVMF (Debian's raw files on this machine).
pub fn test_ovmf_dir() -> Option<OsString> {
    test_program("VMINIT_TEST_OVMF_DIR")
}

/// The swtpm the tests give vminit, as [`test_qemu`]: `$VMINIT_TEST_SWTPM` (scripts/test.sh's
/// wrapper that runs Debian's swtpm on the libcrypto image/build-openssl.sh built, which the image
/// ships) as `VMINIT_SWTPM`, else vminit's default /usr/bin/swtpm on Debian's libcrypto.
pub fn test_swtpm() -> Option<OsString> {
    test_program("VMINIT_TEST_SWTPM")
}

fn test_program(var: &str) -> Option<OsString> {
    std::env::var_os(var).filter(|path| !path.is_empty())
}

/// How to start the container's PID 1; made by [`Container::vminit`].
#[derive(Debug, Clone)]
pub struct VminitBuilder<'c> {
    container: &'c Container,
    binary: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    hostname: String,
    resolv_conf: String,
    kvm: bool,
    dev_net_tun: bool,
    vhost_net: bool,
    privileged: bool,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    /// (source, target, read-only)
    binds: Vec<(PathBuf, PathBuf, bool)>,
    wrapper: Vec<OsString>,
}

impl Container {
    /// vminit (`vminit_binary`) as a user runs it, booting the test guest under TCG with
    /// 256 MiB, `disk` as the image and `cmdline` added to the guest's kernel command line;
    /// every NIC attached (`AUTO_ATTACH=yes`).
    pub fn vminit_with_guest(&self, disk: &super::ScratchDisk, cmdline: &str) -> VminitBuilder<'_> {
        self.vminit(&super::vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "256M")
            .env("VMINIT_DISK", &disk.path)
            .args(super::test_guest().qemu_args(cmdline))
    }

    /// Prepares to run `binary` as this container's PID 1. Defaults are Docker's for
    /// `docker run --cap-add NET_ADMIN --device /dev/net/tun`: hostname = the container id,
    /// the resolv.conf of a user-defined network (`nameserver 127.0.0.11`), no `/dev/kvm`,
    /// read-only `/sys` and `/proc/sys`, Docker's capability set plus `NET_ADMIN`.
    pub fn vminit(&self, binary: &Path) -> VminitBuilder<'_> {
        VminitBuilder {
            container: self,
            binary: binary.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            hostname: self.id().to_owned(),
            resolv_conf: "nameserver 127.0.0.11\noptions ndots:0\n".to_owned(),
            kvm: false,
            dev_net_tun: true,
            vhost_net: false,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            binds: Vec::new(),
            wrapper: Vec::new(),
        }
    }
}

impl<'c> VminitBuilder<'c> {
    /// One more argument (the container's CMD).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable (`-e KEY=VALUE`). The environment starts as Docker's: `PATH`,
    /// `HOSTNAME`, `HOME`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The UTS hostname (`--hostname`).
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_owned();
        self
    }

    /// The text of the container's `/etc/resolv.conf`.
    pub fn resolv_conf(mut self, text: &str) -> Self {
        self.resolv_conf = text.to_owned();
        self
    }

    /// Whether `/dev/kvm` exists (`--device /dev/kvm`).
    pub fn kvm(mut self, yes: bool) -> Self {
        self.kvm = yes;
        self
    }

    /// Whether `/dev/net/tun` exists (`--device /dev/net/tun`); default yes.
    pub fn dev_net_tun(mut self, yes: bool) -> Self {
        self.dev_net_tun = yes;
        self
    }

    /// Whether `/dev/vhost-net` exists (`--device /dev/vhost-net`). This machine has no
    /// vhost-net driver: the node exists but opening it fails with ENXIO/ENODEV.
    pub fn vhost_net(mut self, yes: bool) -> Self {
        self.vhost_net = yes;
        self
    }

    /// `--privileged`: every capability, writable `/sys` and `/proc/sys`.
    pub fn privileged(mut self, yes: bool) -> Self {
        self.privileged = yes;
        self
    }

    /// One more capability (`--cap-add NAME`, lower case without `cap_`, e.g. `sys_admin`).
    pub fn cap_add(mut self, name: &str) -> Self {
        self.cap_add.push(name.to_lowercase());
        self
    }

    /// One capability less (`--cap-drop NAME`, e.g. `net_admin` for a user who forgot
    /// `--cap-add NET_ADMIN`, `mknod`).
    pub fn cap_drop(mut self, name: &str) -> Self {
        self.cap_drop.push(name.to_lowercase());
        self
    }

    /// Bind-mounts `source` onto `target` in the container (`-v SOURCE:TARGET`). `target` must
    /// exist on this machine, or lie under `/run` or `/dev` (private tmpfs), where it is made.
    pub fn bind(mut self, source: &Path, target: &Path) -> Self {
        self.binds
            .push((source.to_owned(), target.to_owned(), false));
        self
    }

    /// Like [`VminitBuilder::bind`], read-only (`-v SOURCE:TARGET:ro`).
    pub fn bind_ro(mut self, source: &Path, target: &Path) -> Self {
        self.binds
            .push((source.to_owned(), target.to_owned(), true));
        self
    }

    /// Starts the binary through `argv` (a program and its arguments that ends by exec'ing
    /// the rest of its command line, e.g. one that installs a seccomp filter first): PID 1
    /// runs `argv… BINARY ARGS…`, and [`VminitBuilder::spawn`] still returns once the binary
    /// itself runs.
    pub fn wrapped_by<S: AsRef<OsStr>>(mut self, argv: &[S]) -> Self {
        self.wrapper = argv.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Starts vminit and expects a refusal: an exit with `code` within `limit` of the start,
    /// exactly one error line, holding every one of `needles`, and nothing on the console.
    /// Returns vminit's whole log, for the caller's checks of the namespace.
    pub fn expect_refusal(self, code: i32, needles: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        let vm = self.spawn();
        let status = vm
            .wait_exit(limit + Duration::from_secs(5))
            .unwrap_or_else(|| panic!("vminit did not exit\n{}", vm.tails()));
        let took = start.elapsed();
        // Every line vminit wrote, not just what the reader thread has seen so far.
        vm.log().wait_closed(Duration::from_secs(5));
        let log = vm.log().text();
        assert_eq!(status.code(), Some(code), "exit code\n{log}");
        assert!(took <= limit, "took {took:?}, more than {limit:?}\n{log}");
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("vminit: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "exactly one error line\n{log}");
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "{needle:?} missing from {:?}",
                errors[0]
            );
        }
        assert!(vm.console().text().is_empty(), "nothing on the console");
        log
    }

    /// Runs vminit (a QEMU that runs until stopped, such as the stand-in) with the test hook
    /// that pauses it after step K of a phase (`at` = `setup:K` or `teardown:K`; teardown
    /// starts with a SIGTERM once QEMU runs), SIGKILLs it there, and says whether the pause was
    /// reached: false when the phase has fewer than K steps (then vminit is killed once QEMU
    /// runs, or has exited after its teardown).
    pub fn killed_at(self, at: &str) -> bool {
        const LIMIT: Duration = Duration::from_secs(30);
        let (phase, k) = at.split_once(':').expect("at is PHASE:STEP");
        let vm = self.env("VMINIT_TEST_PAUSE", at).spawn();
        let paused = format!("test hook: paused after {phase} step {k}:");
        let was_paused = match phase {
            "setup" => {
                let reached = vm.log().wait_until(0, LIMIT, |t| {
                    t.contains(&paused) || t.contains("QEMU running")
                });
                assert!(reached, "never paused at {at}\n{}", vm.tails());
                vm.log().text().contains(&paused)
            }
            "teardown" => {
                vm.expect_log("QEMU running", LIMIT);
                vm.kill(Signal::SIGTERM);
                let deadline = Instant::now() + LIMIT;
                loop {
                    if vm.log().text().contains(&paused) {
                        break true;
                    }
                    if vm.wait_exit(Duration::from_millis(20)).is_some() {
                        break false;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "never paused at {at}\n{}",
                        vm.tails()
                    );
                }
            }
            _ => panic!("at is setup:K or teardown:K, not {at}"),
        };
        vm.kill(Signal::SIGKILL);
        vm.expect_exit(Duration::from_secs(10));
        was_paused
    }

    /// Starts the binary as PID 1 and returns once it runs (or has already ended); panics,
    /// showing its output, if the container setup fails.
    pub fn spawn(self) -> Vminit<'c> {
        let binary = fs::canonicalize(&self.binary)
            .unwrap_or_else(|e| panic!("binary {}: {e}", self.binary.display()));
        let dir = std::env::temp_dir().join(format!("{}-container", unique_id()));
        fs::create_dir_all(&dir).expect("create the container's temporary directory");
        let temp = TempDir(dir);
        let hosts = match self.container.nics().first() {
            Some(nic) if !nic.addrs.is_empty() => format!("{}\t{}\n", nic.ip(), self.hostname),
            Some(nic) if !nic.addrs6.is_empty() => format!("{}\t{}\n", nic.ip6(), self.hostname),
            _ => String::new(),
        };
        let files = [
            ("resolv.conf", self.resolv_conf.clone()),
            (
                "hosts",
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{hosts}"),
            ),
            ("hostname", format!("{}\n", self.hostname)),
        ];
        for (name, text) in &files {
            fs::write(temp.0.join(name), text).expect("write a container file");
        }
        let marker = temp.0.join("exec");

        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--", "ip", "netns", "exec"])
            .arg(self.container.ns().name())
            .args(["unshare", "--mount", "--uts", "--mount-proc"])
            .args([
                "--",
                "/bin/sh",
                "-c",
                &self.setup_script(&temp.0, &marker),
                "vminit-setup",
            ]);
        if !self.privileged {
            let mut caps = String::from("-all");
            for cap in DOCKER_CAPS
                .iter()
                .copied()
                .chain(self.cap_add.iter().map(String::as_str))
                .filter(|cap| !self.cap_drop.iter().any(|d| d == cap))
            {
                caps.push_str(",+");
                caps.push_str(cap);
            }
            command.args(["setpriv", "--bounding-set", &caps, "--"]);
        }
        command
            .args(&self.wrapper)
            .arg(&binary)
            .args(&self.args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOSTNAME", &self.hostname)
            .env("HOME", "/root")
            .envs(test_qemu().map(|qemu| ("VMINIT_QEMU", qemu)))
            .envs(test_qemu_img().map(|img| ("VMINIT_QEMU_IMG", img)))
            .envs(test_dnsmasq().map(|dnsmasq| ("VMINIT_DNSMASQ", dnsmasq)))
            .envs(test_ovmf_dir().map(|dir| ("VMINIT_OVMF_DIR", dir)))
            .envs(test_swtpm().map(|swtpm| ("VMINIT_SWTPM", swtpm)))
            .envs(self.env.iter().map(|(k, v)| (k, v)));

        let (parent, process) = ParentThread::spawn(command);
        let ended_early = !wait_for_exec(&process, &binary, &marker, &self.wrapper);
        if ended_early && !marker.exists() {
            let status = process.wait_exit(Duration::from_secs(5));
            panic!(
                "the container's setup failed ({status:?}) before starting the binary\n{}",
                process.tails()
            );
        }
        Vminit {
            process,
            _parent: parent,
            _temp: temp,
            _container: self.container,
        }
    }

    /// The shell script PID 1 runs before it execs the binary: Docker's mounts and devices.
    fn setup_script(&self, dir: &Path, marker: &Path) -> String {
        let q = |p: &Path| sh_quote(&p.to_string_lossy());
        let mut s = String::from("set -e\n");
        // A container's /dev: a tmpfs with a handful of nodes, never the host's devtmpfs.
        // Device numbers are fixed by Documentation/admin-guide/devices.txt.
        s += "mount -t tmpfs -o nosuid,mode=0755,size=65536k tmpfs /dev\n";
        let mut nodes = vec![
            ("/dev/null", "0666", 1, 3),
            ("/dev/zero", "0666", 1, 5),
            ("/dev/full", "0666", 1, 7),
            ("/dev/random", "0666", 1, 8),
            ("/dev/urandom", "0666", 1, 9),
            ("/dev/tty", "0666", 5, 0),
        ];
        if self.kvm {
            nodes.push(("/dev/kvm", "0660", 10, 232));
        }
        if self.vhost_net {
            nodes.push(("/dev/vhost-net", "0660", 10, 238));
        }
        if self.dev_net_tun {
            s += "mkdir -m 0755 /dev/net\n";
            nodes.push(("/dev/net/tun", "0666", 10, 200));
        }
        for (path, mode, major, minor) in nodes {
            s += &format!("mknod -m {mode} {path} c {major} {minor}\n");
        }
        s += "mkdir -m 0755 /dev/pts /dev/shm\n";
        s += "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts\n";
        s += "mount -t tmpfs -o nosuid,nodev,noexec,size=65536k shm /dev/shm\n";
        s += "ln -s pts/ptmx /dev/ptmx\nln -s /proc/self/fd /dev/fd\n";
        s += "ln -s /proc/self/fd/0 /dev/stdin\nln -s /proc/self/fd/1 /dev/stdout\n";
        s += "ln -s /proc/self/fd/2 /dev/stderr\n";
        s += "mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run\n";
        for name in ["resolv.conf", "hosts", "hostname"] {
            s += &format!("mount --bind {} /etc/{name}\n", q(&dir.join(name)));
        }
        s += &format!("hostname {}\n", sh_quote(&self.hostname));
        for (source, target, read_only) in &self.binds {
            let (src, dst) = (q(source), q(target));
            if target.starts_with("/run") || target.starts_with("/dev") {
                s += &format!(
                    "if [ -d {src} ]; then mkdir -p {dst}; else mkdir -p \"$(dirname {dst})\"; touch {dst}; fi\n"
                );
            }
            s += &format!("mount --bind {src} {dst}\n");
            if *read_only {
                s += &format!("mount -o remount,bind,ro {dst}\n");
            }
        }
        if !self.privileged {
            // Docker mounts both read-only without --privileged.
            s += "mount -o remount,bind,ro /sys\n";
            s += "mount --bind /proc/sys /proc/sys\nmount -o remount,bind,ro /proc/sys\n";
        }
        s += &format!(": > {}\nexec \"$@\"\n", q(marker));
        s
    }
}

/// A binary running as PID 1 of a container. Drop kills it (SIGKILL), which ends its pid
/// namespace (QEMU, dnsmasq and all), and reaps it.
#[derive(Debug)]
pub struct Vminit<'c> {
    process: Process,
    _parent: ParentThread,
    _temp: TempDir,
    _container: &'c Container,
}

impl Vminit<'_> {
    /// PID 1's pid in the test's pid namespace.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The console: everything PID 1 (and QEMU's serial port) wrote to stdout.
    pub fn console(&self) -> &Capture {
        self.process.stdout()
    }

    /// vminit's log: everything written to stderr.
    pub fn log(&self) -> &Capture {
        self.process.stderr()
    }

    /// Waits for `pattern` on the console; panics, showing console and log, on timeout.
    pub fn expect_console(&self, pattern: &str, timeout: Duration) -> Match {
        self.expect_console_from(0, pattern, timeout)
    }

    /// Waits for `pattern` on the console at or after byte offset `from` (e.g. a
    /// `console().len()` taken earlier); panics, showing console and log, on timeout.
    pub fn expect_console_from(&self, from: usize, pattern: &str, timeout: Duration) -> Match {
        self.console()
            .wait_for_from(from, pattern, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "console never showed {pattern:?} within {timeout:?}\n{}",
                    self.process.tails()
                )
            })
    }

    /// Waits for `pattern` in vminit's log; panics, showing console and log, on timeout.
    pub fn expect_log(&self, pattern: &str, timeout: Duration) -> Match {
        self.log().wait_for(pattern, timeout).unwrap_or_else(|| {
            panic!(
                "log never showed {pattern:?} within {timeout:?}\n{}",
                self.process.tails()
            )
        })
    }

    /// Types `text` on the console (writes it to PID 1's stdin), e.g. `"echo $((6*7))\n"`.
    pub fn type_console(&self, text: &str) {
        self.process.write_stdin(text);
    }

    /// Closes PID 1's stdin.
    pub fn close_console(&self) {
        self.process.close_stdin();
    }

    /// Sends `signal` to PID 1 itself (as `docker kill --signal` does). A PID 1 receives only
    /// the signals it handles or blocks, and always SIGKILL.
    pub fn kill(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Waits up to `timeout` for PID 1 to end; its exit status (a code, or the signal that
    /// killed it), or `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Like [`Vminit::wait_exit`], but panics, showing console and log, if it still runs.
    pub fn expect_exit(&self, timeout: Duration) -> ExitStatus {
        self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "PID 1 still runs after {timeout:?}\n{}",
                self.process.tails()
            )
        })
    }

    /// `path` as PID 1 sees it, reachable from the test: `/proc/<pid>/root/<path>` (e.g. the
    /// QMP socket under the container's private /run).
    pub fn container_path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid()))
    }

    /// Runs `argv` inside the container, in all of PID 1's namespaces (as `docker exec`).
    pub fn exec_inside<S: AsRef<str>>(&self, argv: &[S]) -> CmdOutput {
        let pid = self.pid().to_string();
        let mut full = vec![
            "nsenter", "-t", &pid, "-m", "-u", "-n", "-p", "-r", "-w", "--",
        ];
        full.extend(argv.iter().map(AsRef::as_ref));
        run(&full)
    }

    /// `vminit health` inside the container, as `docker exec vm /vminit health` runs it (with the
    /// container's `HEALTH_GRACE`, here `grace` seconds): its exit code and what it printed.
    pub fn health(&self, grace: u32) -> (i32, String) {
        let binary = super::vminit_binary();
        let grace = format!("HEALTH_GRACE={grace}");
        let out = self.exec_inside(&["env", &grace, binary.to_string_lossy().as_ref(), "health"]);
        (out.status.code().unwrap_or(-1), out.stdout)
    }

    /// Both streams' last lines, for failure messages.
    pub fn tails(&self) -> String {
        self.process.tails()
    }
}

impl Drop for Vminit<'_> {
    fn drop(&mut self) {
        // Process's drop kills PID 1 with SIGKILL and reaps it; its pid namespace dies with it.
        // Then the parent thread ends and the temporary files go.
        self.process.signal(Signal::SIGKILL);
        self.process.wait_exit(Duration::from_secs(5));
    }
}

/// The thread that spawned PID 1: its pid namespace for children is PID 1's, and PID 1 dies
/// (PR_SET_PDEATHSIG) when it ends, so it parks until dropped.
#[derive(Debug)]
struct ParentThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ParentThread {
    /// Spawns `command` from a new thread whose children start a new pid namespace.
    fn spawn(mut command: Command) -> (ParentThread, Process) {
        let (started_tx, started_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            // unshare(CLONE_NEWPID): this thread's next child is PID 1 of a new pid namespace.
            let started = nix::sched::unshare(CloneFlags::CLONE_NEWPID)
                .map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))
                .and_then(|()| {
                    // Only the child here: this thread can no longer create threads (clone
                    // refuses CLONE_THREAD across pid namespaces), so the caller starts the readers.
                    Process::spawn_child(&mut command)
                        .map_err(|e| format!("cannot start {command:?}: {e}"))
                });
            let ok = started.is_ok();
            let _ = started_tx.send(started);
            if ok {
                let _ = stop_rx.recv();
            }
        });
        let child = started_rx
            .recv()
            .expect("the parent thread reports")
            .unwrap_or_else(|e| panic!("{e}"));
        let process = Process::adopt(child);
        (
            ParentThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            process,
        )
    }
}

impl Drop for ParentThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until PID 1 has exec'd `binary`: true then, false when it ended first. Past the
/// marker, PID 1 is the setup's shell, then `setpriv` and the wrapper, then the binary; a
/// program that is none of those means the binary ran and exec'd another (the debug shell),
/// which on a loaded machine can happen before the first look.
fn wait_for_exec(process: &Process, binary: &Path, marker: &Path, wrapper: &[OsString]) -> bool {
    let pid = process.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if process.try_status().is_some() {
            return false;
        }
        let argv0 = fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|c| c.split(|&b| b == 0).next().map(<[u8]>::to_vec));
        let before_binary = |argv0: &[u8]| {
            argv0 == b"/bin/sh"
                || argv0 == b"setpriv"
                || wrapper.first().is_some_and(|w| w.as_bytes() == argv0)
        };
        if marker.exists()
            && argv0.as_deref().is_some_and(|a| {
                a == binary.as_os_str().as_bytes() || (!a.is_empty() && !before_binary(a))
            })
        {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "PID 1 did not exec {} within 20 s\n{}",
            binary.display(),
            process.tails()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// `text` as one single-quoted shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A directory removed (with its contents) on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
