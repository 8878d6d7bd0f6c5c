//! A named network namespace that exists exactly as long as its `Netns` value.

use super::cmd::{CmdOutput, run, run_ok};
use super::names::netns_name;

/// A network namespace made with `ip netns add`, deleted on drop.
///
/// IPv6 is disabled in it (as Docker does for IPv4-only networks): no router solicitations, no
/// duplicate address detection, nothing that makes link state or addresses change by themselves.
/// [`Netns::create_ipv6`] makes one with IPv6, for the IPv6 shapes.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `<id>-<role>-<pid>` with `lo` up.
    pub fn create(id: &str, role: &str) -> Netns {
        let ns = Netns::create_ipv6(id, role);
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    /// Creates the namespace `<id>-<role>-<pid>` with `lo` up and IPv6 as the kernel has it by
    /// default (links get link-local addresses, hosts solicit routers).
    pub fn create_ipv6(id: &str, role: &str) -> Netns {
        let name = netns_name(id, role);
        // ip netns add NAME
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS…`; panics, showing the output, if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(&argv)
    }

    /// Runs `sh -c SCRIPT` inside the namespace and returns what happened.
    pub fn exec(&self, script: &str) -> CmdOutput {
        run(&["ip", "netns", "exec", &self.name, "sh", "-c", script])
    }

    /// Runs `sh -c SCRIPT` inside the namespace; panics if it fails, else returns its stdout.
    pub fn exec_ok(&self, script: &str) -> String {
        let out = self.exec(script);
        assert!(out.success(), "in namespace {}: {out}", self.name);
        out.stdout
    }

    /// Sets a per-namespace sysctl (`net.*`), like `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec_ok(&format!("echo {value} > {path}"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // ip netns del NAME — the namespace (and its interfaces) goes once no process is in it.
        let out = run(&["ip", "netns", "del", &self.name]);
        if !out.success() && !std::thread::panicking() {
            eprintln!("warning: {out}");
        }
    }
}
