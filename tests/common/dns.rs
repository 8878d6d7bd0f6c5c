//! A DNS server (dnsmasq) inside a namespace the test made, answering a few fixed names.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use super::netns::Netns;
use super::process::Process;

/// dnsmasq in the foreground in `ns`, listening on `listen` only and answering each name it was
/// given with its address (an A or an AAAA record, and no other: no upstream, no /etc/hosts).
/// Killed on drop.
#[derive(Debug)]
pub struct DnsServer {
    process: Process,
    pub listen: IpAddr,
}

impl DnsServer {
    /// Starts it and waits until it serves. `listen` (IPv4 or IPv6) must already be an address
    /// in `ns`, past duplicate address detection.
    pub fn start<A: Into<IpAddr> + Copy>(
        ns: &Netns,
        listen: impl Into<IpAddr>,
        records: &[(&str, A)],
    ) -> DnsServer {
        let listen = listen.into();
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                ns.name(),
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args([
                "--log-facility=-",
                "--log-queries",
                "--no-resolv",
                "--no-hosts",
            ])
            .arg("--user=root")
            .args(["--bind-interfaces", "--port=53", "--pid-file="])
            .arg(format!("--listen-address={listen}"))
            // Each name is local: its other record types (AAAA) get an empty answer, not
            // REFUSED (there is no upstream to ask).
            .args(records.iter().flat_map(|(name, addr)| {
                let addr: IpAddr = (*addr).into();
                [
                    format!("--host-record={name},{addr}"),
                    format!("--local=/{name}/"),
                ]
            }));
        let process = Process::spawn(command);
        // dnsmasq logs "started" once its sockets are bound.
        assert!(
            process
                .stderr()
                .wait_for("started", Duration::from_secs(10))
                .is_some(),
            "dnsmasq on {listen} in {} did not start\n{}",
            ns.name(),
            process.tails()
        );
        DnsServer { process, listen }
    }

    /// What it logged, every query included.
    pub fn log(&self) -> String {
        self.process.stderr().text()
    }
}
