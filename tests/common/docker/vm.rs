//! How a test's vminit container is made: the README's least-privilege `docker create` line, with
//! what a test changes in it.

use std::path::{Path, PathBuf};

use super::fixtures::Fixtures;
use super::names::label_flags;
use super::net::Net;

/// The test guest's kernel and initramfs inside the container (`-v <guest dir>:/guest:ro`).
pub const GUEST_MOUNT: &str = "/guest";

/// How to create a vminit container; the defaults are the README's least-privilege run line with
/// `AUTO_ATTACH=yes`, the test guest as CMD and a fresh empty disk.
#[derive(Debug, Clone)]
pub struct VmOpts {
    network: Option<Net>,
    env: Vec<(String, String)>,
    net_admin: bool,
    cgroup_rule: bool,
    docker_flags: Vec<String>,
    cmd: Vec<String>,
    disk: Option<PathBuf>,
}

impl Default for VmOpts {
    fn default() -> VmOpts {
        VmOpts::new()
    }
}

impl VmOpts {
    pub fn new() -> VmOpts {
        let guest = |f: &str| format!("{GUEST_MOUNT}/{f}");
        VmOpts {
            network: None,
            env: vec![
                ("AUTO_ATTACH".into(), "yes".into()),
                ("RAM_SIZE".into(), "256M".into()),
            ],
            net_admin: true,
            cgroup_rule: true,
            docker_flags: Vec::new(),
            cmd: vec![
                "-kernel".into(),
                guest("vmlinuz"),
                "-initrd".into(),
                guest("initramfs.cpio.gz"),
                "-append".into(),
                "console=ttyS0 quiet no_timer_check".into(),
            ],
            disk: None,
        }
    }

    /// The network the container is created on (`--network`); others can be connected later.
    pub fn network(mut self, net: &Net) -> VmOpts {
        self.network = Some(net.clone());
        self
    }

    /// Sets (or replaces) an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> VmOpts {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Leaves out `--cap-add NET_ADMIN`.
    pub fn without_net_admin(mut self) -> VmOpts {
        self.net_admin = false;
        self
    }

    /// Leaves out the macvtap `--device-cgroup-rule`.
    pub fn without_cgroup_rule(mut self) -> VmOpts {
        self.cgroup_rule = false;
        self
    }

    /// Appends `extra` to the guest kernel's command line (options of tests/guest/init.sh).
    pub fn kernel_args(mut self, extra: &str) -> VmOpts {
        if let Some(append) = self.cmd.iter().position(|a| a == "-append") {
            let line = &mut self.cmd[append + 1];
            line.push(' ');
            line.push_str(extra);
        }
        self
    }

    /// More `docker create` flags (`--interactive`, `--health-interval=1s`, …).
    pub fn docker_flags(mut self, flags: &[&str]) -> VmOpts {
        self.docker_flags
            .extend(flags.iter().map(|f| (*f).to_owned()));
        self
    }

    /// Replaces the CMD (by default the QEMU arguments that boot the test guest).
    pub fn cmd(mut self, cmd: &[&str]) -> VmOpts {
        self.cmd = cmd.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// The directory mounted at /image (it holds image.qcow2); by default a fresh empty disk.
    pub fn disk(mut self, dir: &Path) -> VmOpts {
        self.disk = Some(dir.to_owned());
        self
    }

    /// The directory the caller chose with [`VmOpts::disk`], if any.
    pub(super) fn disk_dir(&self) -> Option<&Path> {
        self.disk.as_deref()
    }

    /// The arguments of `docker create` for the container `name` with `disk` at /image.
    pub(super) fn create_args(&self, name: &str, disk: &Path, fx: &Fixtures) -> Vec<String> {
        let mut argv: Vec<String> = vec!["create".into(), "--name".into(), name.into()];
        argv.extend(label_flags());
        if let Some(net) = &self.network {
            argv.push(format!("--network={}", net.name));
        }
        if self.net_admin {
            argv.extend(["--cap-add", "NET_ADMIN"].map(String::from));
        }
        argv.extend(["--device", "/dev/kvm"].map(String::from));
        if self.cgroup_rule {
            argv.push(format!("--device-cgroup-rule=c {}:* rwm", fx.macvtap_major));
        }
        argv.push(format!("--volume={}:/image", disk.display()));
        argv.push(format!(
            "--volume={}:{GUEST_MOUNT}:ro",
            fx.guest_dir.display()
        ));
        for (key, value) in &self.env {
            argv.push(format!("--env={key}={value}"));
        }
        argv.extend(self.docker_flags.iter().cloned());
        argv.push(fx.image.clone());
        argv.extend(self.cmd.iter().cloned());
        argv
    }
}
