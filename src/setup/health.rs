//! `vminit health`: whether the guest holds the network it was handed. Asks QEMU whether the
//! guest runs, then the guest itself, from each door, whether it holds each address vminit
//! handed it (an ARP request for IPv4, a neighbour solicitation for IPv6, each from the
//! door's own address: no agent in the guest), and judges with what earlier checks saw
//! (`pid1::health`). The Docker HEALTHCHECK and a Kubernetes readiness probe run it; it
//! changes nothing but its own memory file.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use crate::ipv6::ndp;
use crate::ipv6::packet::PacketSocket;
use crate::ipv6::relay::DoorAddrs;
use crate::net::arp;
use crate::net::netlink::Netlink;
use crate::net::types::Mac;
use crate::net::{discover, netstate::NetState};
use crate::pid1::health::{self, Handed, Verdict};
use crate::rundir::RunDir;
use crate::vm::qmp;

/// How long the guest has to answer a probe.
const ANSWER_WITHIN: Duration = Duration::from_millis(900);
/// How often a probe is sent again meanwhile (one may be lost).
const AGAIN: Duration = Duration::from_millis(300);
/// `ETH_P_ALL`: every frame, seen before the link's tc ingress filters act on it (with the
/// tap datapath they redirect the guest's answers to the NIC), which a socket bound to one
/// type sees only after.
const ETH_P_ALL: u16 = 0x0003;

/// Runs the check, prints its verdict (one line, then one per address that is not held) and
/// returns the exit status: 0 healthy, 1 starting or unhealthy.
pub fn check(run_dir: &RunDir, grace: Duration) -> i32 {
    let socket = run_dir.health();
    match qmp::execute(&socket, "query-status", Duration::from_secs(3)) {
        Ok(answer) if qmp::is_running(&answer) => {}
        Ok(answer) => {
            println!("unhealthy: the guest is not running: {answer}");
            return 1;
        }
        Err(e) => {
            println!("starting: QEMU not answering on {}: {e}", socket.display());
            return 1;
        }
    }
    let Ok(text) = fs::read_to_string(run_dir.guest_nics()) else {
        println!("starting: vminit has not handed the guest its network yet");
        return 1;
    };
    let handed = health::parse_handed(&text);
    let answered = match ask_guest(&handed) {
        Ok(answered) => answered,
        Err(e) => {
            println!("unhealthy: cannot ask the guest for its addresses: {e}");
            return 1;
        }
    };
    let memory = fs::read_to_string(run_dir.health_state())
        .map(|t| health::parse_memory(&t))
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (verdict, memory) = health::judge(&handed, &answered, &memory, now, grace.as_secs());
    // Written whole, then renamed: two checks at once never read half a file.
    let state = run_dir.health_state();
    let tmp = state.with_extension(format!("{}", std::process::id()));
    if fs::write(&tmp, health::render_memory(&memory))
        .and_then(|()| fs::rename(&tmp, &state))
        .is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
    let (word, lines, code) = match verdict {
        Verdict::Healthy(notes) => (
            format!("healthy: the guest holds its {} addresses", handed.len()),
            notes,
            0,
        ),
        Verdict::Starting(lines) => ("starting".to_string(), lines, 1),
        Verdict::Unhealthy(lines) => ("unhealthy".to_string(), lines, 1),
    };
    println!("{word}");
    for line in lines {
        println!("  {line}");
    }
    code
}

/// Whether the guest answers for each handed-over address now, asked from its door.
fn ask_guest(handed: &[Handed]) -> io::Result<Vec<bool>> {
    let mut nl = Netlink::open()?;
    let state = discover::read(&mut nl)?;
    let mut answered = vec![false; handed.len()];
    // Per door: its sockets, and the probes to send with the index of what each asks.
    let mut doors: BTreeMap<&str, Door> = BTreeMap::new();
    for (i, h) in handed.iter().enumerate() {
        let Some(door) = Door::find(&state, &h.door) else {
            continue; // gone with its NIC: not answered
        };
        let door = doors.entry(&h.door).or_insert(door);
        door.asks.push(i);
    }
    for door in doors.values_mut() {
        door.open()?;
    }
    let start = Instant::now();
    let mut sent = None::<Instant>;
    let mut buf = vec![0u8; 2048];
    while start.elapsed() < ANSWER_WITHIN && answered.iter().any(|a| !a) {
        if sent.is_none_or(|t| t.elapsed() >= AGAIN) {
            for door in doors.values() {
                door.send(handed, &answered)?;
            }
            sent = Some(Instant::now());
        }
        for door in doors.values() {
            door.receive(handed, &mut answered, &mut buf)?;
        }
        sleep(Duration::from_millis(2));
    }
    Ok(answered)
}

/// One door (or, with the tap datapath, the tap), with the socket the questions go out of.
/// They come from the door's addresses, never from `0.0.0.0` or `::`: a guest whose address
/// is still tentative (IPv6 duplicate address detection, IPv4 conflict detection) would
/// take a question from nowhere for another host claiming the address, and give it up.
struct Door {
    index: u32,
    mac: Mac,
    /// Its IPv4 address (the one the guest routes to it), if it has one.
    ip4: Option<Ipv4Addr>,
    /// Its link-local IPv6 address, or, when it has none (Docker gives links made in a
    /// container no IPv6), the one derived from its MAC, which nobody else holds.
    ip6: Ipv6Addr,
    /// The handed-over addresses asked for through it, as indices.
    asks: Vec<usize>,
    socket: Option<PacketSocket>,
}

impl Door {
    fn find(state: &NetState, name: &str) -> Option<Door> {
        let link = state.link(name)?;
        let addrs = DoorAddrs::of(link, state)?;
        Some(Door {
            index: link.index,
            mac: addrs.door.mac,
            ip4: addrs.ipv4,
            ip6: addrs.door.link_local,
            asks: Vec::new(),
            socket: None,
        })
    }

    fn open(&mut self) -> io::Result<()> {
        self.socket = Some(PacketSocket::open_for(self.index, ETH_P_ALL)?);
        Ok(())
    }

    fn send(&self, handed: &[Handed], answered: &[bool]) -> io::Result<()> {
        for &i in self.asks.iter().filter(|&&i| !answered[i]) {
            let h = &handed[i];
            let Some(s) = &self.socket else { continue };
            match h.addr {
                IpAddr::V4(a) => {
                    let sender = self.ip4.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    s.send(&arp::request(self.mac, sender, h.mac, a))?
                }
                IpAddr::V6(a) => s.send(&ndp::solicitation(self.mac, h.mac, self.ip6, a))?,
            }
        }
        Ok(())
    }

    fn receive(&self, handed: &[Handed], answered: &mut [bool], buf: &mut [u8]) -> io::Result<()> {
        if let Some(socket) = &self.socket {
            while let Some(n) = socket.recv(buf)? {
                let frame = &buf[..n];
                for &i in &self.asks {
                    let h = &handed[i];
                    answered[i] |= match h.addr {
                        IpAddr::V4(a) => arp::is_reply(frame, h.mac, a),
                        IpAddr::V6(a) => ndp::is_advertisement_of(frame, h.mac, a),
                    };
                }
            }
        }
        Ok(())
    }
}
