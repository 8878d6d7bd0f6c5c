//! Multiqueue NICs: with two vCPUs and `NIC_QUEUES=auto` (or 2) every guest NIC (at start and
//! hot-plugged, macvtap and tap datapath) has two queue pairs and traffic arrives on each;
//! `NIC_QUEUES=1` gives one. Real
//! QEMU (TCG), dnsmasq and the test guest, asked over its console.

use crate::common;
use crate::common::stop;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDisk, Vminit};

const BOOT: Duration = Duration::from_secs(180);
const ASK: Duration = Duration::from_secs(60);

/// A container on `net` (10.N.0.2, default route) whose two-vCPU guest has booted, with
/// `env` added to vminit's environment.
fn booted<'c>(
    ctr: &'c Container,
    net: &Network,
    disk: &ScratchDisk,
    env: &[(&str, &str)],
) -> Vminit<'c> {
    ctr.add_nic(net, NicSpec::docker(net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    let mut builder = ctr
        .vminit_with_guest(disk, "vminit_test_hotplug=1")
        .env("CPU_CORES", "2");
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let vm = builder.spawn();
    vm.expect_console("GUEST-READY", BOOT);
    vm
}

/// What the guest says about its NIC `nic`: its queue directories (`rx-0`, `tx-0`, …) and
/// the interrupts of each of its virtqueues so far (`input.0` → count, summed over CPUs).
struct Queues {
    dirs: Vec<String>,
    irqs: BTreeMap<String, u64>,
}

impl Queues {
    fn rx(&self) -> Vec<&str> {
        self.dirs
            .iter()
            .filter(|d| d.starts_with("rx-"))
            .map(String::as_str)
            .collect()
    }
}

/// Asks the guest, on its console, for `nic`'s queues. The answer lines carry a tag the
/// typed command does not (`$((…))` is expanded only when the guest runs it), so the
/// console's echo never matches.
fn ask(vm: &Vminit, nic: &str, round: u32) -> Queues {
    let tag = format!("MQ{round}");
    let mark = vm.console().len();
    vm.type_console(&format!(
        "d=$(basename $(readlink /sys/class/net/{nic}/device)); \
         echo {tag}-$((7*6)) dirs $(ls /sys/class/net/{nic}/queues); \
         awk -v d=$d -v t={tag}-$((7*6)) '$NF ~ \"^\" d \"-(input|output)\" \
         {{ s = 0; for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) s += $i; \
         sub(\"^\" d \"-\", \"\", $NF); print t, \"irq\", $NF, s }}' /proc/interrupts; \
         echo {tag}-$((7*6)) end\n"
    ));
    let head = format!("{tag}-42 ");
    let done = vm.console().wait_for_from(mark, &format!("{head}end"), ASK);
    assert!(
        done.is_some(),
        "the guest did not answer about {nic}\n{}",
        vm.tails()
    );
    let text = vm.console().text_from(mark);
    let mut q = Queues {
        dirs: Vec::new(),
        irqs: BTreeMap::new(),
    };
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix(&head) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            ["dirs", dirs @ ..] => q.dirs = dirs.iter().map(|d| d.to_string()).collect(),
            ["irq", name, count] => {
                q.irqs.insert(name.to_string(), count.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    q
}

/// From the network's peer, one UDP datagram to `addr` from each of `flows` source ports:
/// as many flows, which the macvtap spreads over the queues by their hash.
fn flows_to(net: &Network, addr: std::net::Ipv4Addr, flows: u16) {
    let out = net.peer_exec(&format!(
        "python3 -c '
import socket
for port in range(40000, 40000 + {flows}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((\"0.0.0.0\", port))
    for _ in range(4):
        s.sendto(b\"x\" * 100, (\"{addr}\", 9))
    s.close()
'"
    ));
    assert!(out.success(), "{out}");
}

/// Asserts `nic` has `queues` queue pairs in the guest and that traffic from the peer
/// arrived on each of them.
fn assert_traffic_on_every_queue(
    vm: &Vminit,
    net: &Network,
    nic: &str,
    ip: std::net::Ipv4Addr,
    queues: usize,
) {
    let before = ask(vm, nic, 1);
    let want: Vec<String> = (0..queues).map(|i| format!("rx-{i}")).collect();
    assert_eq!(before.rx(), want, "{nic}'s receive queues\n{}", vm.tails());
    let tx = before.dirs.iter().filter(|d| d.starts_with("tx-")).count();
    assert_eq!(tx, queues, "{nic}'s transmit queues: {:?}", before.dirs);
    assert!(
        net.peer_ping(ip),
        "the guest answers on {nic}\n{}",
        vm.tails()
    );
    flows_to(net, ip, 64);
    let after = ask(vm, nic, 2);
    for i in 0..queues {
        let name = format!("input.{i}");
        let (b, a) = (
            before.irqs.get(&name).copied().unwrap_or(0),
            after.irqs.get(&name).copied().unwrap_or(0),
        );
        assert!(
            a > b,
            "receive queue {i} of {nic} got no traffic ({b} -> {a} interrupts): {:?}\n{}",
            after.irqs,
            vm.tails()
        );
    }
}

#[test]
fn with_nic_queues_auto_and_two_vcpus_each_nic_and_a_hot_plugged_one_has_two_queues_carrying_traffic()
 {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(&ctr, &n1, &disk, &[("NIC_QUEUES", "auto")]);
    assert_traffic_on_every_queue(&vm, &n1, "eth0", n1.addr(2), 2);
    let line = vm.log().text();
    assert!(
        line.contains("fds=") && line.contains("mq=on,vectors=6"),
        "QEMU's command line asks for two queues:\n{line}"
    );

    // docker network connect
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 7));
    let added = vm
        .console()
        .wait_for_whole_line(&format!("mac={} ip=", eth1.mac), ASK)
        .unwrap_or_else(|| panic!("the guest never got {}\n{}", eth1.mac, vm.tails()))
        .line;
    let name = added
        .split_whitespace()
        .skip_while(|w| *w != "added")
        .nth(1)
        .unwrap_or("eth1")
        .to_string();
    assert_traffic_on_every_queue(&vm, &n2, &name, eth1.ip(), 2);
    stop(&vm);
}

#[test]
fn nic_queues_1_gives_each_nic_one_queue() {
    let n1 = Network::new(1);
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(&ctr, &n1, &disk, &[("NIC_QUEUES", "1")]);
    assert_traffic_on_every_queue(&vm, &n1, "eth0", n1.addr(2), 1);
    let line = vm.log().text();
    assert!(
        !line.contains("mq=on") && line.contains(",fd="),
        "one descriptor, no multiqueue:\n{line}"
    );
    stop(&vm);
}

#[test]
fn with_the_tap_datapath_and_nic_queues_2_the_nic_has_two_queues_carrying_traffic() {
    let n1 = Network::new(1);
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(
        &ctr,
        &n1,
        &disk,
        &[("NET_DATAPATH", "tap"), ("NIC_QUEUES", "2")],
    );
    assert!(vm.log().text().contains("datapath: tap"), "{}", vm.tails());
    assert_traffic_on_every_queue(&vm, &n1, "eth0", n1.addr(2), 2);
    stop(&vm);
}
