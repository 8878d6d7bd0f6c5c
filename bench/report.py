#!/usr/bin/env python3
"""bench/report.py RESULTS_DIR BENCHMARKS_MD PLOT_PNG — turns bench/run.sh's raw data into the
report and its plot. Every number in the report is computed here from RESULTS_DIR, which one run
of bench/run.sh filled; nothing is carried over from earlier runs.

Raw data (all written by bench/run.sh):
  machine.env, footprint.env     KEY=VALUE lines
  setup.tsv                      tool nics run t0_mono_ns t1_mono_ns (vminit/reference exec -> QEMU exec)
  setup/vminit-nN-rR.log         vminit's stderr, each line prefixed with CLOCK_MONOTONIC ns
  setup/strace-*.txt             one extra run of each under strace (counts only)
  restore.tsv                    nics restored(yes/no): state after vminit exits == before
  boot.tsv                       kind run t0_real qemu_real ping_us g_init g_modules g_net g_ready stop_ms
                                 ... g_net6 ping6_us (vminit's boots: the guest's IPv6)
                                 (kind: vminit, vminit-tap, vminit-nN, floor; vminit-old: vminit on
                                 Debian's QEMU beside BENCH_QEMU's; distro, distro-floor: the Debian guest)
  plug.tsv                       run plug_mono_ns plug_real_ns ping_us stop_ms (a NIC attached while the
                                 guest runs: the attach stamp, the first reply from the guest on it)
  plug/rR.log, plug/rR.console   vminit's stderr and the guest's console of that run, timestamped
  iperf/PATH-up|down-R.json      iperf3 -J output (boot kinds: test R in boot R)
  mq.tsv                         queues run conn_per_s conn_failed (CPU_CORES=2, NIC_QUEUES=queues);
                                 iperf/mqQ-up|down-R.json: iperf3 -P 4 of the same boot
"""

import json
import os
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RES, MD, PNG = sys.argv[1:4]
TARGET_SETUP_MS = 10.0  # vminit's goal for 2 NICs
TARGET_BOOT_MS = 100.0  # what vminit may add to the floor's boot-to-network


def read_env(name):
    out = {}
    path = os.path.join(RES, name)
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def read_tsv(name):
    path = os.path.join(RES, name)
    if not os.path.exists(path):
        return []
    lines = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    head = lines[0]
    return [dict(zip(head, row)) for row in lines[1:]]


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values):
    return pct(values, 50)


def _or_nan(f):
    """`f` (min, max) that gives NaN for no values: a section whose data is missing (a run cut
    short, a step that failed) is reported as "–", never a crash."""

    def g(*args, **kw):
        if len(args) == 1 and not kw:
            values = list(args[0])
            return f(values) if values else float("nan")
        return f(*args, **kw)

    return g


min, max = _or_nan(min), _or_nan(max)  # noqa: A001


def ms(x, digits=1):
    return "–" if x != x else f"{x:.{digits}f}"


machine = read_env("machine.env")
foot = read_env("footprint.env")
foot8 = read_env("footprint-n8.env")  # the same with 8 NICs

# ---- setup latency ---------------------------------------------------------------------------

setup = defaultdict(list)  # (tool, nics) -> [ms]
t0_of = {}
for row in read_tsv("setup.tsv"):
    d = (int(row["t1_mono_ns"]) - int(row["t0_mono_ns"])) / 1e6
    setup[(row["tool"], int(row["nics"]))].append(d)
    t0_of[(row["tool"], int(row["nics"]), int(row["run"]))] = int(row["t0_mono_ns"])
t1_of = {}
for row in read_tsv("setup.tsv"):
    t1_of[(row["tool"], int(row["nics"]), int(row["run"]))] = int(row["t1_mono_ns"])
nic_counts = sorted({n for (tool, n) in setup if tool in ("vminit", "reference")})
calibration = setup.get(("calibration", 0), [])

# vminit's time, from its timestamped log, cut into segments: from exec to the first line, from
# each vminit line to the next, from the last one to QEMU's exec (dnsmasq's own lines are left out:
# it runs beside vminit). Step lines ("ip …") are logged before their step, so a segment that
# starts with one is that step; result lines ("accelerator: …") are logged
# after their work, so a segment that ends with one is that work. This holds whatever order
# vminit does things in.
CATS = [
    ("start", "exec → first log line: process start, config, input checks, …"),
    ("other", "other work between log lines: discovery, plan, probes, …"),
    ("kvm", "work that ends with the 'accelerator:' line (the KVM probe, …)"),
    ("netlink", "netlink steps (`ip …`, `ethtool …` lines)"),
    ("taps", "tap nodes (mknod, open)"),
    ("qemu", "QEMU spawn: 'starting' line → QEMU's main() (the stand-in's own start included)"),
]


def category(start, end):
    if start is None:
        return "start"
    if end is None or "vminit: QEMU started" in start:
        return "qemu"
    if re.search(r"vminit: (ip |ethtool |vmlink\d+: TX checksum)", start):
        return "netlink"
    if "vminit: mknod /dev/tap" in start:
        return "taps"
    if "vminit: starting " in start:
        return "qemu"
    if end is not None and "accelerator: " in end:
        return "kvm"
    return "other"


STEP_KINDS = [
    ("route del", r"vminit: ip route del"),
    ("addr del", r"vminit: ip addr del"),
    ("new MAC on ethN", r"vminit: ip link set eth\d+ address"),
    ("add macvtap", r"vminit: ip link add .* macvtap"),
    ("alias on vmtapN", r"vminit: ip link set vmtap\d+ alias"),
    ("add macvlan", r"vminit: ip link add .* macvlan"),
    ("alias on vmlinkN", r"vminit: ip link set vmlink\d+ alias"),
    ("tx checksum off", r"vminit: (ethtool|vmlink\d+: TX checksum)"),
    ("link up", r"vminit: ip link set \S+ up"),
    ("addr add", r"vminit: ip addr add"),
    ("route add", r"vminit: ip route add"),
    ("mknod + open tap", r"vminit: mknod /dev/tap"),
]


def parse_log(path):
    lines = []
    for line in open(path, errors="replace"):
        m = re.match(r"(\d+) (.*)", line.rstrip("\n"))
        if m:
            lines.append((int(m.group(1)), m.group(2)))
    return lines


handed_ms = defaultdict(list)  # nics -> [ms from exec to the 'QEMU running' line: the takeover done]
phase_ms = defaultdict(lambda: defaultdict(list))  # nics -> category -> [ms]
step_ms = defaultdict(lambda: defaultdict(list))  # nics -> step kind -> [ms per run, summed]
timelines = {}  # (nics, run) -> [(offset ms, text)]
for (tool, n, r), t0 in t0_of.items():
    if tool != "vminit":
        continue
    path = os.path.join(RES, "setup", f"{tool}-n{n}-r{r}.log")
    if not os.path.exists(path):
        continue
    t1 = t1_of[(tool, n, r)]
    whole = parse_log(path)
    running = next((t for t, text in whole if "vminit: QEMU running" in text), None)
    if running is not None:
        handed_ms[n].append((running - t0) / 1e6)
    lines = [(t, text) for t, text in whole if t <= t1]
    timelines[(n, r)] = [((t - t0) / 1e6, text) for t, text in lines] + [((t1 - t0) / 1e6, "(QEMU exec)")]
    vm = [(t, text) for t, text in lines if text.startswith("vminit:")]
    points = [(t0, None)] + vm + [(t1, None)]
    cats = defaultdict(float)
    for (ta, a_text), (tb, b_text) in zip(points, points[1:]):
        cats[category(a_text, b_text)] += (tb - ta) / 1e6
    for key, _ in CATS:
        phase_ms[n][key].append(cats.get(key, 0.0))
    # Steps: a step line's time runs until the next vminit line (a TX-checksum warning belongs
    # to the ethtool step before it).
    sums = defaultdict(float)
    for i, (t, text) in enumerate(vm):
        kind = next((k for k, p in STEP_KINDS if re.search(p, text)), None)
        if kind is None or "TX checksum" in text:
            continue
        j = i + 1
        while j < len(vm) and "TX checksum" in vm[j][1]:
            j += 1
        end = vm[j][0] if j < len(vm) else t1
        sums[kind] += (end - t) / 1e6
    for kind, total in sums.items():
        step_ms[n][kind].append(total)

# ---- strace counts ---------------------------------------------------------------------------

profile = {}
p = os.path.join(RES, "setup", "strace-vminit.txt")
if os.path.exists(p):
    text = open(p, errors="replace").read().splitlines()
    pids = {}
    for line in text:
        m = re.match(r"(\d+) +execve\(\"([^\"]*)\"", line)
        if m:
            pids[m.group(1)] = os.path.basename(m.group(2))
    vminit_pid = next((pid for pid, prog in pids.items() if prog == "vminit"), None)
    dnsmasq_pid = next((pid for pid, prog in pids.items() if prog == "dnsmasq"), None)
    reqs = defaultdict(int)
    for line in text:
        if vminit_pid and line.startswith(vminit_pid + " ") and "sendto(" in line:
            m = re.search(r"nlmsg_type=(RTM_[A-Z]+), nlmsg_flags=([A-Z_|]+)", line)
            if m:
                reqs[m.group(1) + (" (dump)" if "DUMP" in m.group(2) else "")] += 1
    profile["netlink"] = dict(sorted(reqs.items(), key=lambda kv: -kv[1]))
    if dnsmasq_pid:
        libs = {
            l
            for l in text
            if l.startswith(dnsmasq_pid + " ") and re.search(r'open(at)?\(.*"[^"]*\.so[.0-9]*"', l) and "= -1" not in l
        }
        profile["dnsmasq_libs"] = len(libs)
p = os.path.join(RES, "setup", "strace-reference.txt")
if os.path.exists(p):
    text = open(p, errors="replace").read().splitlines()
    progs = defaultdict(int)
    for l in text:
        m = re.search(r'execve\("([^"]*)"', l)
        if m and not re.search(r"= -1 ", l):
            progs[os.path.basename(m.group(1))] += 1
    profile["reference_execs"] = sum(progs.values())
    profile["reference_progs"] = dict(sorted(progs.items(), key=lambda kv: -kv[1]))

restore = {int(r["nics"]): r["restored"] for r in read_tsv("restore.tsv")}

# ---- boot to network -------------------------------------------------------------------------

boot = defaultdict(list)
paired = defaultdict(dict)  # run -> kind -> boot to network (ms)
for row in read_tsv("boot.tsv"):

    def g(k, scale=1.0):
        try:
            return float(row[k]) * scale
        except (KeyError, ValueError):
            return float("nan")

    t0 = int(row["t0_real_ns"]) / 1e6  # ms, realtime
    tq = int(row["qemu_real_ns"]) / 1e6
    tp = int(row["ping_us"]) / 1e3
    qm = g("qemu_mono_ns", 1e-6)  # ms, monotonic
    paired[row["run"]][row["kind"]] = tp - t0
    # The distribution guest prints no timestamps of its own: its DHCP exchange is read from
    # dnsmasq's lines in vminit's log (monotonic ns), set against the ping (realtime) via t0.
    dhcp = {}
    # vminit's boots: when its takeover, done while QEMU starts, was complete (its
    # `QEMU running` line, monotonic ns).
    handed = float("nan")
    vlog = os.path.join(RES, "boot", f"{row['kind']}-r{row['run']}.log")
    if row["kind"].startswith("vminit") and os.path.exists(vlog):
        handed = next((t / 1e6 for t, text in parse_log(vlog) if "vminit: QEMU running" in text), handed)
    if row["kind"] == "distro":
        path = os.path.join(RES, "boot", f"distro-r{row['run']}.log")
        for t, text in parse_log(path) if os.path.exists(path) else []:
            for msg in ("DHCPDISCOVER", "DHCPACK"):
                if msg in text and msg not in dhcp:
                    dhcp[msg] = t / 1e6
    real_minus_mono = t0 - g("t0_mono_ns", 1e-6)
    boot[row["kind"]].append(
        {
            "net_ms": tp - t0,
            # IPv6 (vminit's boots, on a dual-stack network): the first `ping -6` reply at the
            # container's IPv6 address, and the guest's uptime once its DHCPv6 address is usable
            # and a router advertisement gave it a route.
            "net6_ms": g("ping6_us", 1e-3) - t0,
            "g_net6": g("g_net6"),
            "setup_ms": tq - t0,
            "handed_ms": handed - g("t0_mono_ns", 1e-6),
            "qemu_to_ping_ms": tp - tq,
            "q_init": g("h_init_ns", 1e-6) - qm,
            "q_modules": g("h_modules_ns", 1e-6) - qm,
            "q_net": g("h_net_ns", 1e-6) - qm,
            "net_to_ping": (tp - tq) - (g("h_net_ns", 1e-6) - qm),
            "g_init": g("g_init"),
            "g_modules": g("g_modules"),
            "g_net": g("g_net"),
            "g_ready": g("g_ready"),
            "stop_ms": g("stop_ms"),
            "q_discover": dhcp.get("DHCPDISCOVER", float("nan")) - qm,
            "dhcp_exchange": dhcp.get("DHCPACK", float("nan")) - dhcp.get("DHCPDISCOVER", float("nan")),
            "ack_to_ping": tp - (dhcp.get("DHCPACK", float("nan")) + real_minus_mono),
        }
    )


# The DHCP exchange as vminit's dnsmasq logged it (its stderr was timestamped like vminit's, on the
# same clock as the console lines): which side of the exchange takes the time.
DHCP_STEPS = [
    ("virtio modules loaded (console) → DHCPDISCOVER reaches dnsmasq: the guest's link up, udhcpc start",
     "h_modules", "DHCPDISCOVER"),
    ("DHCPDISCOVER → DHCPOFFER: dnsmasq", "DHCPDISCOVER", "DHCPOFFER"),
    ("DHCPOFFER → DHCPREQUEST: the guest's udhcpc", "DHCPOFFER", "DHCPREQUEST"),
    ("DHCPREQUEST → DHCPACK: dnsmasq", "DHCPREQUEST", "DHCPACK"),
    ("DHCPACK → address configured (console): the guest's lease script", "DHCPACK", "h_net"),
]
dhcp_steps = defaultdict(list)
for row in read_tsv("boot.tsv"):
    if row["kind"] != "vminit":
        continue
    path = os.path.join(RES, "boot", f"vminit-r{row['run']}.log")
    if not os.path.exists(path):
        continue
    marks = {k: int(row[k + "_ns"]) for k in ("h_modules", "h_net") if row.get(k + "_ns", "").isdigit()}
    for t, text in parse_log(path):
        for msg in ("DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK"):
            if msg in text and msg not in marks:
                marks[msg] = t
    for label, a, b in DHCP_STEPS:
        if a in marks and b in marks:
            dhcp_steps[label].append((marks[b] - marks[a]) / 1e6)


pair_diffs = [d["vminit"] - d["floor"] for d in paired.values() if "vminit" in d and "floor" in d]


def boot_stat(kind, key, f=med):
    return f([b[key] for b in boot.get(kind, []) if b[key] == b[key]])


# The distribution guest's own description (its DISTRO-REPORT on the console).
distro_name = "Debian 12, systemd-networkd"
for kind in ("distro", "distro-floor"):
    path = os.path.join(RES, "boot", f"{kind}-r1.console")
    if os.path.exists(path):
        facts = dict(re.findall(r"DISTRO-REPORT (os|client) ([^\r\n]*)", open(path, errors="replace").read()))
        if "os" in facts and "client" in facts:
            distro_name = f"{facts['os']}, {facts['client']}"
            break


# ---- hot-plug --------------------------------------------------------------------------------

# What a hot-plug run's time is made of, each piece from the attach stamp's clock (vminit's log and
# the console lines are timestamped on arrival, CLOCK_MONOTONIC; the ping's replies are realtime).
PLUG_PARTS = [
    ("notice", "the NIC appears → vminit starts taking it over (the kernel's notifications until "
     "the NIC is up and they pause for 5 ms, reading the namespace)"),
    ("takeover", "vminit's takeover steps (address, MAC, macvtap, door: the `ip …` lines)"),
    ("qmp", "tap opened, QMP `getfd`, `netdev_add`, `device_add` → \"plugged into the guest\""),
    ("probe", "→ the guest's first DHCPDISCOVER reaches dnsmasq (ACPI hot-plug, PCI probe, virtio-net, "
     "the guest's watcher, udhcpc starts)"),
    ("dhcp", "DHCPDISCOVER → DHCPACK (the exchange, both sides)"),
    ("apply", "DHCPACK → first ping reply (the guest's lease script sets the address)"),
]


def plug_run(row):
    r, t0 = row["run"], int(row["plug_mono_ns"])
    total = int(row["ping_us"]) / 1e3 - int(row["plug_real_ns"]) / 1e6
    marks = {}
    path = os.path.join(RES, "plug", f"r{r}.log")
    for t, text in parse_log(path) if os.path.exists(path) else []:
        if t < t0:
            continue
        for key, pattern in [
            ("step", r"vminit: ip "),
            ("tap", r"vminit: mknod /dev/tap"),
            ("plugged", r"vminit: \S+: plugged into the guest"),
            ("dnsmasq", r"vminit: dnsmasq (serves again|\(pid \d+\) reads its hosts)"),
            ("discover", r"DHCPDISCOVER\("),
            ("ack", r"DHCPACK\("),
        ]:
            if key not in marks and re.search(pattern, text):
                marks[key] = (t - t0) / 1e6
    seen = done = reported = float("nan")
    path = os.path.join(RES, "plug", f"r{r}.console")
    for line in open(path, errors="replace") if os.path.exists(path) else []:
        m = re.match(r"(\d+) .*BENCH-HOTPLUG added \S+ \S+ ([\d.]+) ([\d.]+)", line)
        if m:
            reported = (int(m.group(1)) - t0) / 1e6
            seen, done = float(m.group(2)), float(m.group(3))
            break
    nan = float("nan")
    g = lambda k: marks.get(k, nan)  # noqa: E731
    return {
        "total": total,
        "notice": g("step"),
        "takeover": g("tap") - g("step"),
        "qmp": g("plugged") - g("tap"),
        "vminit": g("plugged"),
        "dnsmasq": g("dnsmasq"),
        "probe": g("discover") - g("plugged"),
        "dhcp": g("ack") - g("discover"),
        "apply": total - g("ack"),
        "reported": reported,
        "guest": (done - seen) * 1e3,
        "stop_ms": float(row["stop_ms"]) if row.get("stop_ms", "").strip() else nan,
    }


plug = [plug_run(row) for row in read_tsv("plug.tsv")]


def plug_stat(key, f=med):
    return f([p[key] for p in plug if p[key] == p[key]])


def plug_spread(key, d=0):
    """median (min–max) of a hot-plug figure, or the one value."""
    vals = [p[key] for p in plug if p[key] == p[key]]
    if len(vals) < 2:
        return ms(med(vals), d)
    return f"{ms(med(vals), d)} ({ms(min(vals), d)}–{ms(max(vals), d)})"


# ---- throughput ------------------------------------------------------------------------------


def rates(path, direction):
    """Every repetition's receiver rate, Mbit/s."""
    out = []
    for k in range(1, 100):
        p = os.path.join(RES, "iperf", f"{path}-{direction}-{k}.json")
        if not os.path.exists(p):
            break
        try:
            out.append(json.load(open(p))["end"]["sum_received"]["bits_per_second"] / 1e6)
        except (OSError, ValueError, KeyError):
            pass
    return out


def mbps(path, direction):
    """The median over the repetitions of the receiver's rate, Mbit/s."""
    return med(rates(path, direction))


PATHS = [
    ("veth", "veth between namespaces, no guest (ceiling)"),
    ("vminit", "guest via vminit's macvtap"),
    ("vminit-tap", "guest via vminit's tap (NET_DATAPATH=tap: tc mirred to the NIC)"),
    ("floor", "guest via a macvtap made by hand, no vminit"),
    ("passt", "guest via vminit's user mode (passt, NET_DATAPATH=user)"),
    ("slirp", "guest via vminit's user mode where passt cannot sandbox itself "
              "(QEMU's slirp; Docker's default seccomp profile)"),
    ("usernet", "guest via QEMU user-mode networking (slirp, hostfwd)"),
]
tput = {p: (mbps(p, "up"), mbps(p, "down")) for p, _ in PATHS}


def spread(values, d=0):
    """`median (min–max), n=N` of the values, or `–` when there are none."""
    if not values:
        return "–"
    return f"**{ms(med(values), d)}** ({ms(min(values), d)}–{ms(max(values), d)}), n={len(values)}"


mq_rows = read_tsv("mq.tsv")
MQ = {}
for q in (1, 2):
    conns = [float(r["conn_per_s"]) for r in mq_rows if r["queues"] == str(q) and r["conn_per_s"]]
    MQ[q] = {"up": rates(f"mq{q}", "up"), "down": rates(f"mq{q}", "down"), "conn": conns,
             "failed": sum(int(r["conn_failed"] or 0) for r in mq_rows if r["queues"] == str(q))}

# ---- the report ------------------------------------------------------------------------------

accel = machine.get("accel", "?")
two = 2 if 2 in nic_counts else (nic_counts[0] if nic_counts else None)
v2 = med(setup.get(("vminit", two), [])) if two else float("nan")
r2 = med(setup.get(("reference", two), [])) if two else float("nan")
out = []
w = out.append

w("# vminit benchmarks")
w("")
w(f"Generated by `bench/run.sh{' --quick' if machine.get('mode') == 'quick' else ''}` on {machine.get('date', '?')}; "
  "do not edit by hand, rerun it. Every figure below was measured in that one run, next to what it is "
  "compared with. Raw data: `target/bench/results/`.")
w("")
w("![setup latency, phases, boot to network, throughput](bench/benchmarks.png)")
w("")
QUICK = machine.get("mode") == "quick"


def verdict(ok):
    """`Target …: **met**/**missed**` in a full run; nothing in quick mode (too few samples)."""
    if QUICK:
        return "(quick mode: no verdict)"
    return f"**{'met' if ok else 'missed'}**"


# Two boot kinds measured side by side (same run, boots interleaved, throughput test r in boot r):
# the tap datapath beside macvtap, the old QEMU beside the new. The second is judged against a band
# of 10 % around the first's median.
BAND = 0.10
OLD_SKIPPED = machine.get("qemu_old_skipped", "")


def beside(a, b):
    """Boot to network and throughput both ways of kinds a and b: (label, a's samples, b's samples,
    lower is better), the rows where both have samples."""
    rows = [("boot to network (ms, lower is better)", [x["net_ms"] for x in boot.get(a, [])],
             [x["net_ms"] for x in boot.get(b, [])], True)]
    for d, direction in (("up", "to"), ("down", "from")):
        rows.append((f"throughput {direction} the guest (Mbit/s, higher is better)", rates(a, d), rates(b, d), False))
    return [row for row in rows if row[1] and row[2]]


def worse(a, b, lower_is_better):
    """How much worse b's median is than a's, as a share of a's (negative: better); NaN without a."""
    ma, mb = med(a), med(b)
    if not ma > 0:
        return float("nan")
    return (mb - ma) / ma if lower_is_better else (ma - mb) / ma


def tap_verdict(a, b, lower_is_better):
    """The tap datapath's target: not worse than macvtap by more than BAND."""
    return "within 10 %" if worse(a, b, lower_is_better) <= BAND else "outside 10 %"


def noise_verdict(a, b, lower_is_better):
    """Old QEMU (a) against new (b): the same within noise when the medians differ by at most BAND
    either way, or when each median lies inside the other's samples (min–max)."""
    d = worse(a, b, lower_is_better)
    if abs(d) <= BAND:
        return "within noise (10 % band)"
    if min(a) <= med(b) <= max(a) and min(b) <= med(a) <= max(b):
        return "within noise (inside the samples' spread)"
    return f"outside noise (new {'worse' if d > 0 else 'better'})" if d == d else "–"


def beside_headline(title, note, name_a, name_b, rows, judge):
    """The headline line of a side-by-side comparison: medians and, in a full run, the verdicts."""
    if not rows:
        return
    cells = []
    for label, a, b, lower in rows:
        judged = "" if QUICK else f" ({judge(a, b, lower)})"
        cells.append(f"{label}: {name_a} {ms(med(a), 1)}, {name_b} {ms(med(b), 1)}{judged}")
    w(f"- **{title}** (same run, interleaved; {note}): " + "; ".join(cells)
      + (" (quick mode: figures only, no verdicts)." if QUICK else "."))


w("## Headline")
w("")
if two:
    w(f"- **Setup latency, {two} NICs** (container start → QEMU exec): vminit **{ms(v2)} ms**, the bash "
      f"reference **{ms(r2)} ms**: vminit is **{r2 / v2:.1f}× faster**. Target < {TARGET_SETUP_MS:.0f} ms: "
      f"{verdict(v2 < TARGET_SETUP_MS)}.")
if boot.get("vminit") and boot.get("floor"):
    dv, df = boot_stat("vminit", "net_ms"), boot_stat("floor", "net_ms")
    w(f"- **Boot to network** ({accel.upper()}): vminit {ms(dv / 1e3, 2)} s, floor (plain QEMU, static address) "
      f"{ms(df / 1e3, 2)} s: vminit adds **{ms(dv - df, 0)} ms** (medians of {len(boot['vminit'])} and "
      f"{len(boot['floor'])} boots). Target < {TARGET_BOOT_MS:.0f} ms: "
      f"{verdict(dv - df < TARGET_BOOT_MS)}. Of the difference, vminit's own setup is "
      f"{ms(boot_stat('vminit', 'setup_ms'), 0)} ms and the guest's DHCP client (against a static address) "
      f"{ms((med([b['g_net'] - b['g_modules'] for b in boot['vminit']]) - med([b['g_net'] - b['g_modules'] for b in boot['floor']])) * 1e3, 0)} ms "
      f"of guest time; the rest is the boot's own spread ({ms(boot_stat('floor', 'net_ms', min), 0)}–"
      f"{ms(boot_stat('floor', 'net_ms', max), 0)} ms for the floor).")
if boot.get("vminit") and boot_stat("vminit", "net6_ms") == boot_stat("vminit", "net6_ms"):
    w(f"- **Boot to IPv6** ({accel.upper()}, the same boots on a dual-stack network): the first `ping -6` reply "
      f"at the container's IPv6 address after {ms(boot_stat('vminit', 'net6_ms') / 1e3, 2)} s, against "
      f"{ms(boot_stat('vminit', 'net_ms') / 1e3, 2)} s for IPv4; in the guest, "
      f"{ms(med([b['g_net6'] - b['g_modules'] for b in boot['vminit']]) * 1e3, 0)} ms from the virtio modules to "
      f"a usable IPv6 address and route (router advertisement + DHCPv6), against "
      f"{ms(med([b['g_net'] - b['g_modules'] for b in boot['vminit']]) * 1e3, 0)} ms to the IPv4 address: "
      "IPv6 waits for the guest's link-local address to pass duplicate address detection (a second, by the RFC) "
      "before its DHCPv6 client may speak.")
tap_rows = beside("vminit", "vminit-tap")
if two and setup.get(("vminit", two)) and setup.get(("vminit-tap", two)):
    tap_rows.insert(0, (f"setup latency, {two} NICs (ms, lower is better)", setup[("vminit", two)],
                        setup[("vminit-tap", two)], True))
beside_headline("The tap datapath beside macvtap", "target: within 10 %", "macvtap", "tap", tap_rows, tap_verdict)
if OLD_SKIPPED:
    w(f"- **Old QEMU beside new**: skipped ({OLD_SKIPPED}; section 6).")
else:
    beside_headline("Old QEMU beside new", "Debian's package QEMU against `BENCH_QEMU`'s; noise: a 10 % band "
                    "either way, or the samples' spread, section 6", "old", "new", beside("vminit-old", "vminit"),
                    noise_verdict)
if boot.get("distro") and boot.get("distro-floor"):
    dv, df = boot_stat("distro", "net_ms"), boot_stat("distro-floor", "net_ms")
    w(f"- **Boot to network, a real distribution** ({distro_name}, {accel.upper()}): vminit "
      f"{ms(dv / 1e3, 1)} s, the same guest with a static address under plain QEMU {ms(df / 1e3, 1)} s: "
      f"a difference of {ms(dv - df, 0)} ms (medians of {len(boot['distro'])} and {len(boot['distro-floor'])} "
      f"boots; section 2).")
if plug:
    runs = (f"median of {len(plug)}, {ms(plug_stat('total', min), 0)}–{ms(plug_stat('total', max), 0)}"
            if len(plug) > 1 else "one run")
    w(f"- **Hot-plug** (a NIC connected while the guest runs, as `docker network connect` does; "
      f"{accel.upper()}): the guest answers ping on it **{ms(plug_stat('total'), 0)} ms** after it appears "
      f"({runs}): {ms(plug_stat('vminit'), 0)} ms of vminit's own "
      "work (notifications, takeover, dnsmasq told, QMP hot-plug), the rest the emulated guest's hot-plug "
      "handling and DHCP (section 3).")
up, down = tput["vminit"]
w(f"- **Throughput** through vminit's macvtap: {ms(up, 0)} Mbit/s to the guest, {ms(down, 0)} Mbit/s from it "
  f"(vminit's user mode, passt: {ms(tput['passt'][0], 0)} / {ms(tput['passt'][1], 0)}, "
  f"slirp: {ms(tput['slirp'][0], 0)} / {ms(tput['slirp'][1], 0)}; "
  f"QEMU user-mode networking: {ms(tput['usernet'][0], 0)} / {ms(tput['usernet'][1], 0)}; veth ceiling: "
  f"{ms(tput['veth'][0], 0)} / {ms(tput['veth'][1], 0)}).")
if mq_rows:
    w(f"- **Multiqueue** (two vCPUs, section 4b): 4 iperf3 streams to the guest "
      f"{ms(med(MQ[1]['up']), 0)} Mbit/s with one queue, {ms(med(MQ[2]['up']), 0)} with two; from it "
      f"{ms(med(MQ[1]['down']), 0)} / {ms(med(MQ[2]['down']), 0)}; short connections "
      f"{ms(med(MQ[1]['conn']), 0)} / {ms(med(MQ[2]['conn']), 0)} per second.")
w(f"- **Footprint**: a {int(machine.get('binary_bytes', 0)) / 1048576:.2f} MiB static binary, "
  f"{foot.get('vminit_rss_kb', '?')} KiB resident as PID 1 while the guest runs, "
  f"{foot.get('container_procs', '?')} processes in the container.")
w("")
w("## Targets of issue 24 (performance, round two)")
w("")
w(f"Load on this 2-core machine, shared with other engineers' builds and tests during the run: load average "
  f"{machine.get('load_start', '?')} (1, 5, 15 min) at the start, {machine.get('load_end', '?')} at the end. "
  "Medians (min–max) of the run's samples" + (" — quick mode: figures only, no verdicts." if QUICK else "."))
w("")
w("| target | measured | verdict |")
w("|---|---|---|")
if setup.get(("vminit", 8)):
    s8 = setup[("vminit", 8)]
    w(f"| setup at 8 NICs ≤ 10 ms | {spread(s8, 2)} ms | {verdict(med(s8) <= 10.0)} |")
for n in (1, 2, 4):
    if setup.get(("vminit", n)):
        w(f"| setup at {n} NIC{'s' if n > 1 else ''} (for comparison) | {spread(setup[('vminit', n)], 2)} ms | – |")
if handed_ms.get(8):
    w(f"| exec → takeover done, while QEMU starts (for comparison), 8 NICs | {spread(handed_ms[8], 2)} ms | – |")
def handed(kind):
    """Exec → the takeover done (while QEMU starts), for the targets table's comparison rows."""
    return [b["handed_ms"] for b in boot[kind] if b.get("handed_ms") == b.get("handed_ms")]


if boot.get("vminit"):
    share = [b["setup_ms"] for b in boot["vminit"] if b.get("setup_ms") == b.get("setup_ms")]
    w(f"| vminit's share of boot to network, dual-stack, 1 NIC ≤ 15 ms | {spread(share, 1)} ms | "
      f"{verdict(med(share) <= 15.0)} |")
for n in (2, 8):
    if boot.get(f"vminit-n{n}"):
        share = [b["setup_ms"] for b in boot[f"vminit-n{n}"] if b.get("setup_ms") == b.get("setup_ms")]
        w(f"| the same at {n} NICs ≤ 15 ms | {spread(share, 1)} ms | {verdict(med(share) <= 15.0)} |")
for kind, label in (("vminit", "1 NIC"), ("vminit-n2", "2 NICs"), ("vminit-n8", "8 NICs")):
    if handed(kind):
        w(f"| exec → takeover done, while QEMU starts (for comparison), {label} | {spread(handed(kind), 1)} ms | – |")
if plug:
    share = [p["vminit"] for p in plug if p["vminit"] == p["vminit"]]
    w(f"| vminit's part of a hot-plug ≤ 50 ms | {spread(share, 0)} ms | "
      f"{verdict(med(share) <= 50.0)} |")
rss = foot.get("vminit_rss_kb", "")
if rss.isdigit():
    w(f"| vminit's RSS ≤ 2 MiB | {rss} KiB with 1 NIC | {verdict(int(rss) <= 2048)} |")
rss8 = foot8.get("vminit_rss_kb", "")
if rss8.isdigit():
    w(f"| the same with 8 NICs | {rss8} KiB | {verdict(int(rss8) <= 2048)} |")
w(f"| binary ≤ 2 MiB | {int(machine.get('binary_bytes', 0)) / 1048576:.2f} MiB | "
  f"{verdict(int(machine.get('binary_bytes', 0)) <= 2 * 1048576)} |")
if mq_rows:
    w(f"| multiqueue: the default measured, 1 queue against 2 at 2 vCPUs | section 4b | – |")
w("")

w("## Machine")
w("")
w("| | |")
w("|---|---|")
for key, label in [
    ("cpu", "CPU"), ("cores", "cores"), ("kernel", "host kernel"), ("os", "OS"), ("qemu", "QEMU"),
    ("dnsmasq", "dnsmasq"), ("accel", "acceleration (chosen by vminit, ACCEL=auto)"),
    ("vhost", "vhost-net (VHOST=auto)"), ("revision", "vminit revision"), ("binary_sha256", "binary sha256 (first 12)"),
    ("date", "date"), ("mode", "mode"), ("guest_kernel", "guest kernel"), ("ram", "guest RAM"),
    ("load_start", "load average at start (1, 5, 15 min)"), ("load_end", "load average at the end"),
    ("elapsed_s", "duration of this run (s)"),
]:
    w(f"| {label} | {machine.get(key, '?')} |")
w("")
if accel == "tcg":
    w("The guests run under TCG (software emulation): `/dev/kvm` exists here but cannot run a guest (vminit's "
      "probe says why in the raw logs). Boot times and throughput are therefore those of an emulated CPU; "
      "setup latency does not depend on it. The same command on a KVM host measures KVM.")
    w("")

w("## 1. Setup latency: container start → QEMU exec")
w("")
w(f"From the exec of the container's PID 1 (vminit, or `bash bench/reference-startvm.sh`) to the exec of QEMU, "
  f"which is a stand-in that records the time and checks it inherited one open tap device per NIC. "
  f"{machine.get('setup_runs', '?')} runs per point, fresh container namespace each run, order alternated. "
  "Milliseconds: median (p10–p90) [min–max].")
w("")
w("| NICs | vminit | reference (bash, ip, mknod, dnsmasq) | reference / vminit | vminit: takeover done |")
w("|---:|---|---|---:|---|")
for n in nic_counts:
    v, r = setup.get(("vminit", n), []), setup.get(("reference", n), [])
    h = handed_ms.get(n, [])
    w(f"| {n} | **{ms(med(v), 2)}** ({ms(pct(v, 10), 2)}–{ms(pct(v, 90), 2)}) [{ms(min(v), 2)}–{ms(max(v), 2)}] "
      f"| {ms(med(r))} ({ms(pct(r, 10))}–{ms(pct(r, 90))}) [{ms(min(r))}–{ms(max(r))}] | {med(r) / med(v):.1f}× "
      f"| {ms(med(h), 2)} ({ms(pct(h, 10), 2)}–{ms(pct(h, 90), 2)}) |")
w("")
w("vminit execs QEMU once every NIC's guest link (the macvtap, down, or the tap) is made and open: that is all "
  "QEMU needs at its start. The takeover itself (the identity record, the NIC's address and MAC, the door, its "
  "routes) follows while QEMU starts, since a guest sends nothing before its firmware and kernel have run. The "
  "last column is the time from exec to the end of that takeover (the `QEMU running` line): the work vminit "
  "still does, off the critical path. Section 2's boot to network is measured end to end, so it includes any "
  "time that work takes from QEMU.")
w("")
if calibration:
    w(f"Measurement floor: the stamp helper exec'ing the stand-in directly takes {ms(med(calibration), 2)} ms "
      f"({ms(pct(calibration, 10), 2)}–{ms(pct(calibration, 90), 2)}); every figure above includes one such exec.")
    w("")
if restore:
    ok = all(v == "yes" for v in restore.values())
    w(f"Network restored exactly after vminit exits (links, addresses, routes compared before/after, first run "
      f"of each NIC count): **{'yes' if ok else 'NO: see target/bench/results/setup/restore-diff-*.txt'}** "
      f"({', '.join(f'{n} NICs: {v}' for n, v in sorted(restore.items()))}).")
    w("")

w("### Where vminit's time goes")
w("")
w("vminit's stderr went through a pipe to a reader that timestamps each line as it arrives "
  "(CLOCK_MONOTONIC, the clock of the exec and QEMU stamps; the reader runs at real-time priority, lines "
  "written less than ~0.1 ms apart may share a stamp). The time from exec to QEMU's exec is cut at vminit's "
  "log lines: `ip …` lines are logged before their step, result lines (`accelerator: …`) after their "
  "work. Since b059354 the setup before QEMU's exec is every NIC's guest link, made and opened; the "
  "takeover and dnsmasq follow while QEMU starts (section 1's last column). Medians in ms (share of the sum):")
w("")
w("| segment | " + " | ".join(f"{n} NIC{'s' if n > 1 else ''}" for n in nic_counts) + " |")
w("|---|" + "---:|" * len(nic_counts))
totals = {n: sum(med(phase_ms[n][k]) for k, _ in CATS) for n in nic_counts}
for key, label in CATS:
    cells = []
    for n in nic_counts:
        m = med(phase_ms[n][key])
        cells.append(f"{ms(m, 2)} ({100 * m / totals[n]:.0f}%)" if totals[n] else "–")
    w(f"| {label} | " + " | ".join(cells) + " |")
w("| **sum of medians** | " + " | ".join(f"**{ms(totals[n], 2)}**" for n in nic_counts) + " |")
w("")
va, vt = setup.get(("vminit", 2), []), setup.get(("vminit-tcg", 2), [])
if va and vt:
    w(f"The KVM probe: with ACCEL=tcg, which skips it, the whole setup at 2 NICs takes {ms(med(vt), 2)} ms "
      f"({ms(pct(vt, 10), 2)}–{ms(pct(vt, 90), 2)}) against {ms(med(va), 2)} ms with ACCEL=auto: the probe "
      f"costs about **{ms(med(va) - med(vt), 2)} ms** here (same runs, interleaved).")
    w("")
if two and totals.get(two):
    order = sorted(((med(phase_ms[two][k]), label) for k, label in CATS), reverse=True)
    w(f"Budget at {two} NICs against the {TARGET_SETUP_MS:.0f} ms target: {ms(totals[two], 2)} ms in all; "
      "largest: " + "; ".join(f"{label}: {ms(v, 2)} ms" for v, label in order[:3]) + ".")
    w("")
per_nic = {n: med(phase_ms[n]["netlink"]) / n for n in nic_counts if phase_ms[n]["netlink"]}
if per_nic:
    w("Netlink steps per NIC: " + ", ".join(f"{ms(v, 2)} ms at {n} NIC{'s' if n > 1 else ''}"
                                          for n, v in per_nic.items()) + ".")
    w("")
if two:
    runs = sorted((t[-1][0], r) for (n, r), t in timelines.items() if n == two)
    if runs:
        total, r = runs[len(runs) // 2]
        w(f"<details><summary>Timeline of the median run at {two} NICs (run {r}, {ms(total, 2)} ms): "
          "every log line, ms after exec</summary>")
        w("")
        w("| ms | line |")
        w("|---:|---|")
        for off, text in timelines[(two, r)]:
            text = text if len(text) <= 110 else text[:107] + "…"
            w(f"| {off:.2f} | `{text.replace('|', '/')}` |")
        w("")
        w("</details>")
        w("")
if any(step_ms.get(n) for n in nic_counts):
    w("Netlink steps, ms per NIC (median over runs of the step's time summed over all NICs, divided by the "
      "NIC count; a step runs from its log line to the next one):")
    w("")
    w("| step | " + " | ".join(f"{n} NIC{'s' if n > 1 else ''}" for n in nic_counts) + " |")
    w("|---|" + "---:|" * len(nic_counts))
    for kind, _ in STEP_KINDS:
        cells = [ms(med(step_ms[n][kind]) / n, 2) if step_ms[n].get(kind) else "–" for n in nic_counts]
        w(f"| {kind} | " + " | ".join(cells) + " |")
    w("")
if profile:
    w("Counts from one extra run of each under `strace -f` (2 NICs; its times are not used):")
    w("")
    if profile.get("netlink"):
        w("- vminit's netlink requests: " + ", ".join(f"{v}× {k}" for k, v in profile["netlink"].items()) + ".")
    if "dnsmasq_libs" in profile:
        w(f"- dnsmasq loads {profile['dnsmasq_libs']} shared libraries before it can serve "
          f"({machine.get('dnsmasq', '')}).")
    if "reference_execs" in profile:
        top = ", ".join(f"{k} {v}" for k, v in list(profile["reference_progs"].items())[:6])
        w(f"- the reference executes {profile['reference_execs']} programs ({top}, …).")
    w("")

w("## 2. Boot to network")
w("")
w("From the exec of the container's PID 1 to the first ICMP echo reply from the guest at the container's "
  "address, pinged every 20 ms from the peer on the container's network (the peer has a permanent ARP entry "
  "for the address in both cases, so ARP timing plays no part; with vminit, replies before QEMU's exec "
  "come from the container itself and are not counted). The floor is the same guest and QEMU options booted "
  "by plain QEMU as the container's PID 1, over a macvtap and tap node made by hand before the clock starts, "
  "its address set statically (no DHCP).")
w("")
w("| ms | vminit (DHCP from vminit's dnsmasq) | floor (plain QEMU, static) | vminit − floor |")
w("|---|---:|---:|---:|")
rows = [
    ("**boot to network** (ms, median)", "net_ms", 0),
    ("  min", "net_ms", 0, min),
    ("  max", "net_ms", 0, max),
    ("PID 1 exec → QEMU exec", "setup_ms", 1),
    ("QEMU exec → first reply", "qemu_to_ping_ms", 0),
    ("  QEMU exec → guest's /init starts (console line)", "q_init", 0),
    ("  QEMU exec → virtio modules loaded", "q_modules", 0),
    ("  QEMU exec → guest address configured (console line)", "q_net", 0),
]
for row in rows:
    label, key, d = row[:3]
    f = row[3] if len(row) > 3 else med
    a, b = boot_stat("vminit", key, f), boot_stat("floor", key, f)
    w(f"| {label} | {ms(a, d)} | {ms(b, d)} | {ms(a - b, d) if f is med else ''} |")
for label, key in [
    ("**boot to IPv6**: first `ping -6` reply at the container's IPv6 address (ms, median)", "net6_ms"),
    ("  guest uptime: modules loaded → IPv6 address and route (RA + DHCPv6)", "g_net6"),
]:
    vals = [b[key] - (b["g_modules"] if key == "g_net6" else 0) for b in boot.get("vminit", [])]
    vals = [v * (1e3 if key == "g_net6" else 1) for v in vals if v == v]
    w(f"| {label} | {ms(med(vals), 0)} | – | |")
dn = [b["g_net"] - b["g_modules"] for b in boot.get("vminit", [])]
fn = [b["g_net"] - b["g_modules"] for b in boot.get("floor", [])]
w(f"| guest uptime: modules loaded → address configured (DHCP vs static) | {ms(med(dn) * 1e3, 0)} | "
  f"{ms(med(fn) * 1e3, 0)} | {ms((med(dn) - med(fn)) * 1e3, 0)} |")
gi = [b["g_init"] for b in boot.get("vminit", [])]
fi = [b["g_init"] for b in boot.get("floor", [])]
w(f"| guest uptime at /init (kernel boot) | {ms(med(gi) * 1e3, 0)} | {ms(med(fi) * 1e3, 0)} | "
  f"{ms((med(gi) - med(fi)) * 1e3, 0)} |")
w("")
if dhcp_steps:
    w("Where the guest's DHCP time goes (vminit boots; dnsmasq's log lines and the console lines timestamped on "
      "arrival by the host, same clock; ms, median):")
    w("")
    w("| | ms |")
    w("|---|---:|")
    for label, _, _ in DHCP_STEPS:
        if dhcp_steps.get(label):
            v = med(dhcp_steps[label])
            w(f"| {label} | {'< 0.1' if v < 0.05 else ms(v, 1)} |")
    w("")
w("Milliseconds, medians unless marked. Console lines are timestamped by the host as they arrive "
  "(CLOCK_MONOTONIC), the guest's own uptime has a 10 ms resolution.")
w("")
if len(pair_diffs) > 1:
    w(f"Boots were run in pairs (one of each, order alternating). The paired differences vminit − floor have a "
      f"median of {ms(med(pair_diffs), 0)} ms and range from {ms(min(pair_diffs), 0)} to {ms(max(pair_diffs), 0)} ms: "
      f"under {accel.upper()} the guest's own boot time varies by more than what vminit adds, so the difference of "
      "medians is only a rough figure; the rows that vminit alone accounts for (PID 1 exec → QEMU exec, the DHCP "
      "exchange) are measured directly.")
    w("")
w(f"{len(boot.get('vminit', []))} boots each, alternating. Stop (`docker stop`: SIGTERM to vminit → ACPI power "
  f"button → guest powers off → network restored → exit): {ms(boot_stat('vminit', 'stop_ms'), 0)} ms (median).")
w("")
if boot.get("distro") and boot.get("distro-floor"):
    w(f"### A real distribution: {distro_name}")
    w("")
    w("The same measurement with a guest that boots like a user's: Debian 12 from Debian's archive with its own "
      "kernel, initramfs and systemd (`tests/distro/build-images.sh`, guest `networkd`), its network configured "
      "by systemd-networkd. With vminit it asks DHCP; the floor is the same guest, disk image and QEMU options "
      "under plain QEMU over a hand-made macvtap, with a static address from the kernel command line (`ip=`, "
      "which systemd-network-generator turns into a networkd configuration). Each boot uses a fresh overlay of "
      "the same root disk.")
    w("")
    w("| ms | vminit (DHCP) | floor (plain QEMU, static) | vminit − floor |")
    w("|---|---:|---:|---:|")
    for row in [
        ("**boot to network** (ms, median)", "net_ms", 0),
        ("  min", "net_ms", 0, min),
        ("  max", "net_ms", 0, max),
        ("PID 1 exec → QEMU exec", "setup_ms", 1),
        ("QEMU exec → first reply", "qemu_to_ping_ms", 0),
    ]:
        label, key, d = row[:3]
        f = row[3] if len(row) > 3 else med
        a, b = boot_stat("distro", key, f), boot_stat("distro-floor", key, f)
        w(f"| {label} | {ms(a, d)} | {ms(b, d)} | {ms(a - b, d) if f is med else ''} |")
    for label, key in [
        ("  QEMU exec → DHCPDISCOVER reaches dnsmasq (the guest boots, networkd starts)", "q_discover"),
        ("  DHCPDISCOVER → DHCPACK (the exchange, both sides)", "dhcp_exchange"),
        ("  DHCPACK → first reply (networkd applies the lease)", "ack_to_ping"),
    ]:
        w(f"| {label} | {ms(boot_stat('distro', key), 0)} | | |")
    w("")
    w(f"{len(boot['distro'])} boots each, alternating. A systemd boot under {accel.upper()} varies by seconds from "
      "one boot to the next, more than what DHCP adds: the difference of the two columns is a rough figure; "
      "the DHCP rows (from dnsmasq's log lines, timestamped on arrival) are what the lease costs this guest. "
      "Stop (SIGTERM to vminit → ACPI power button → systemd powers off → exit): "
      f"{ms(boot_stat('distro', 'stop_ms'), 0)} ms (median).")
    w("")

if plug:
    w("## 3. Hot-plug: a NIC connected while the guest runs")
    w("")
    w("vminit boots the bench guest with one NIC; once the guest is ready (its hot-plug watcher looks for new "
      "NICs every 50 ms and configures them by DHCP), a second NIC is attached to the running container the "
      "way `docker network connect` attaches one (a veth from the second network's bridge, named eth1 in the "
      "container, Docker's MAC and address, up). The clock starts right before the `ip` that creates the link "
      "and stops at the first ICMP echo reply from the guest at the new NIC's address (pinged every 20 ms "
      "from that network's peer, which knows the MAC; replies before vminit plugged the NIC come from the "
      "container itself and are not counted). The pieces come from vminit's log and dnsmasq's lines (timestamped "
      "on arrival, same clock). Milliseconds, median (min–max):")
    w("")
    w("| | ms |")
    w("|---|---:|")
    w(f"| **NIC appears → the guest answers on it** | **{plug_spread('total')}** |")
    for key, label in PLUG_PARTS:
        w(f"| {label} | {plug_spread(key, 1 if key in ('takeover', 'qmp', 'dhcp') else 0)} |")
    w(f"| of which vminit: NIC appears → plugged into the guest | {plug_spread('vminit')} |")
    w(f"| of which: NIC appears → dnsmasq told to read its hosts (SIGHUP; or, restarted, serves) | "
      f"{plug_spread('dnsmasq')} |")
    w(f"| the guest reports the NIC configured (console line, host clock) | {plug_spread('reported')} |")
    w(f"| the guest's own clock: watcher noticed the NIC → configured | {plug_spread('guest')} |")
    w("")
    w(f"{len(plug)} boot{'s, one hot-plug each' if len(plug) > 1 else ', one hot-plug'}. vminit's share is "
      "the kernel's notifications until the NIC is up (Docker brings it up after its MAC and addresses) and "
      "a 5 ms pause in them, then a few milliseconds of netlink steps, dnsmasq's hosts and options written "
      "and a SIGHUP (no restart), and QMP; the rest is the guest under emulation: the ACPI hot-plug event, "
      "the PCI and virtio-net probe, the watcher's next look, and udhcpc with its lease script. "
      f"Stop afterwards: {ms(plug_stat('stop_ms'), 0)} ms (median).")
    w("")

w("## 4. Throughput")
w("")
w(f"iperf3, one TCP stream, {machine.get('iperf_seconds', '?')} s each way, median of "
  f"{machine.get('iperf_reps', '?')} tests (through a guest of section 2: test r in its boot r, so the paths "
  "compared side by side alternate as their boots do); client on the network's peer (user-mode networking: on the host "
  "side of the port forward); \"to the guest\" = the peer sends. Same guest kernel and QEMU options, "
  f"{accel.upper()}, vhost-net {machine.get('vhost', '?')}. vminit's macvtap and the hand-made one are the same "
  "kernel path (vminit only sets it up): their difference is the emulated guest's run-to-run noise. Mbit/s:")
w("")
w("| path | to the guest | from the guest |")
w("|---|---:|---:|")
for p, label in PATHS:
    a, b = tput[p]
    w(f"| {label} | {ms(a, 0)} | {ms(b, 0)} |")
w("")

if mq_rows:
    w("## 4b. Multiqueue")
    w("")
    w(f"The bench guest with `CPU_CORES=2` (TCG runs one host thread per vCPU), booted by vminit "
      f"{machine.get('mq_runs', '?')} times with `NIC_QUEUES=1` and as often with `NIC_QUEUES=2`, alternately. "
      f"Each boot: iperf3 with 4 parallel streams, {machine.get('iperf_seconds', '?')} s each way, then "
      f"{machine.get('iperf_seconds', '?')} s of short TCP connections from the peer to the guest's busybox httpd "
      "(bench/connrate.py: 4 workers, each connecting, sending one HTTP/1.0 request and reading the answer "
      "until the guest closes). Median (min–max) over the boots:")
    w("")
    w("| queues per NIC | to the guest, Mbit/s | from the guest, Mbit/s | connections per second | failed connections |")
    w("|---:|---|---|---|---:|")
    for q in (1, 2):
        w(f"| {q} | {spread(MQ[q]['up'])} | {spread(MQ[q]['down'])} | {spread(MQ[q]['conn'])} | {MQ[q]['failed']} |")
    w("")
    if machine.get("mode") != "quick":
        gains = []
        for key, label in (("up", "to the guest"), ("down", "from the guest"), ("conn", "short connections")):
            a, b = med(MQ[1][key]), med(MQ[2][key])
            if a == a and b == b and a > 0:
                gains.append(f"{label} {100.0 * (b - a) / a:+.0f}%")
        w("Two queues against one: " + ", ".join(gains) + ".")
        w("")

w("## 5. Footprint")
w("")
w("| | |")
w("|---|---|")
w(f"| vminit binary (static, musl) | {int(machine.get('binary_bytes', 0)):,} bytes "
  f"({int(machine.get('binary_bytes', 0)) / 1048576:.2f} MiB), stripped: {machine.get('binary_stripped', '?')} |")
w(f"| vminit resident set as PID 1, guest running (VmRSS / peak VmHWM) | {foot.get('vminit_rss_kb', '?')} KiB / "
  f"{foot.get('vminit_hwm_kb', '?')} KiB |")
children = {k[len('child_'):-len('_rss_kb')]: v for k, v in foot.items() if k.startswith("child_")}
w(f"| processes in the container (pid namespace) | {foot.get('container_procs', '?')}: vminit, "
  + ", ".join(f"{c} ({v} KiB)" for c, v in children.items()) + " |")
img = machine.get("image", "?")
w(f"| Docker image `vminit:latest` | {f'{int(img):,} bytes' if img.isdigit() else img} |")
w(f"| bench guest initramfs (busybox, virtio modules, iperf3) | {int(machine.get('guest_initramfs_bytes', 0)):,} bytes |")
w("")

w("## 6. Old QEMU beside new")
w("")
if OLD_SKIPPED:
    w(f"Skipped: {OLD_SKIPPED}. With `BENCH_QEMU=PATH` naming another QEMU (e.g. the one `image/build-qemu.sh` "
      "builds; `scripts/test.sh` passes it), vminit's macvtap boots and their throughput also run on Debian's "
      "package QEMU, beside that one.")
else:
    w(f"`BENCH_QEMU` names another QEMU than Debian's package one, so vminit's macvtap boots of section 2 also ran "
      f"on Debian's QEMU (\"old\", `{machine.get('qemu_old_path', '?')}`, {machine.get('qemu_old', '?')}) beside "
      f"`BENCH_QEMU`'s (\"new\", `{machine.get('qemu_path', '?')}`, {machine.get('qemu', '?')}): the same guest, disk, "
      f"NIC setup (macvtap on the dual-stack network, vhost-net {machine.get('vhost', '?')}, {accel.upper()}) and vminit, "
      "only the QEMU it starts differs. One boot of each per round, adjacent, their order alternating (old, new, "
      "new, old, …), so drifts of the machine's load hit both alike; iperf3 test r (one TCP stream each way, "
      f"{machine.get('iperf_seconds', '?')} s) in boot r, as in section 4. Median (min–max), n:")
    w("")
    w("| | old (Debian's QEMU) | new (`BENCH_QEMU`) | new against old | spread of old / new | verdict |")
    w("|---|---|---|---:|---:|---|")
    # Where a boot's time goes, figures only: QEMU's own start (exec → the guest kernel's clock starts:
    # the console's /init line less the guest's uptime there) and the guest's uptime at its address.
    parts = [("of which QEMU exec → the guest's kernel starts (ms: QEMU's start-up, firmware)",
              lambda x: x["q_init"] - x["g_init"] * 1e3),
             ("of which the guest's uptime when its address is set (ms, its own clock)", lambda x: x["g_net"] * 1e3)]
    rows = beside("vminit-old", "vminit")
    for label, f in reversed(parts):
        a, b = ([f(x) for x in boot.get(k, []) if f(x) == f(x)] for k in ("vminit-old", "vminit"))
        if a and b:
            rows.insert(1, (label, a, b, None))
    for label, a, b, lower in rows:
        own = " / ".join(f"{100 * (max(v) - min(v)) / med(v):.0f} %" if len(v) > 1 else "–" for v in (a, b))
        judged = "–" if QUICK or lower is None else f"**{noise_verdict(a, b, lower)}**"
        rel = f"{100 * (med(b) - med(a)) / med(a):+.1f} %" if med(a) > 0 else "–"
        w(f"| {label} | {spread(a, 0)} | {spread(b, 0)} | {rel} | {own} | {judged} |")
    w("")
    w("What is taken as noise: the medians differing by at most 10 % of the old QEMU's either way (the band of the "
      "tap datapath's comparison with macvtap), or, where the samples spread wider than that, each median lying "
      "inside the other QEMU's samples (min–max): a difference the boot-to-boot spread of the emulated guest "
      "covers is not told apart from noise. The spread column is each side's max − min as a share of its median. "
      "The rows \"of which\" are figures only. " + ("Quick mode: one sample each, figures only, no verdict." if QUICK else
                                   f"{machine.get('boot_runs', '?')} boots and {machine.get('iperf_reps', '?')} "
                                   "throughput tests each way per QEMU."))
w("")

w("## How to reproduce")
w("")
w("`sudo bench/run.sh`, or `bench/run.sh --quick` (3 setup runs per point, 1 boot each, 1 hot-plug, 1 s iperf3; about a "
  "minute here). The load average above shows whether something else ran on the machine meanwhile. It installs what it lacks with apt-get, builds vminit, a static stamp helper "
  "(`bench/stamp.c`) and the bench guest (`bench/build-guest.sh`: the test guest plus iperf3), and keeps "
  "everything in network namespaces it deletes on exit.")
w("")
open(MD, "w").write("\n".join(out))

# ---- the plot --------------------------------------------------------------------------------

fig, ax = plt.subplots(2, 2, figsize=(13, 9))
a = ax[0][0]
for tool, color in [("vminit", "tab:blue"), ("reference", "tab:red")]:
    xs = [n for n in nic_counts if setup.get((tool, n))]
    m = [med(setup[(tool, n)]) for n in xs]
    lo = [med(setup[(tool, n)]) - pct(setup[(tool, n)], 10) for n in xs]
    hi = [pct(setup[(tool, n)], 90) - med(setup[(tool, n)]) for n in xs]
    label = "vminit" if tool == "vminit" else "reference (bash startvm way)"
    a.errorbar(xs, m, yerr=[lo, hi], marker="o", capsize=4, color=color, label=label)
    for x, y in zip(xs, m):
        a.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, -12 if tool == "vminit" else 6), fontsize=8)
a.axhline(TARGET_SETUP_MS, color="gray", linestyle="--", linewidth=1, label=f"target {TARGET_SETUP_MS:.0f} ms")
a.set_yscale("log")
if nic_counts:
    a.set_xscale("log", base=2)
a.set_xticks(nic_counts)
a.set_xticklabels([str(n) for n in nic_counts])
a.set_xlabel("NICs")
a.set_ylabel("ms, median (p10–p90)")
a.set_title("Setup latency: PID 1 exec → QEMU exec")
a.legend()
a.grid(True, which="both", alpha=0.3)

a = ax[0][1]
bottom = [0.0] * len(nic_counts)
colors = plt.cm.tab10.colors
for i, (key, label) in enumerate(CATS):
    vals = [med(phase_ms[n][key]) if phase_ms[n][key] else 0 for n in nic_counts]
    a.bar([str(n) for n in nic_counts], vals, bottom=bottom, label=label, color=colors[i % 10])
    bottom = [b + v for b, v in zip(bottom, vals)]
a.axhline(TARGET_SETUP_MS, color="gray", linestyle="--", linewidth=1)
a.set_ylim(0, max(bottom + [1]) * 1.45)
a.set_xlabel("NICs")
a.set_ylabel("ms (medians)")
a.set_title("vminit setup phases")
a.legend(fontsize=7, loc="upper left")

a = ax[1][0]
BOOT_KINDS = [("vminit", "tab:blue", "vminit macvtap\n(DHCP)"), ("vminit-tap", "tab:orange", "vminit tap\n(DHCP)"),
              ("floor", "tab:green", "floor: plain QEMU\n(static)")]
if boot.get("vminit-old"):
    BOOT_KINDS.append(("vminit-old", "tab:purple", "vminit macvtap,\nDebian's QEMU (old)"))
for i, (kind, color, _) in enumerate(BOOT_KINDS):
    vals = [b["net_ms"] / 1e3 for b in boot.get(kind, [])]
    if vals:
        a.scatter([i] * len(vals), vals, color=color, zorder=3)
        a.hlines(med(vals), i - 0.25, i + 0.25, color="black")
a.set_xticks(list(range(len(BOOT_KINDS))))
a.set_xticklabels([label for _, _, label in BOOT_KINDS])
a.set_ylabel("s")
a.set_title(f"Boot to network: PID 1 exec → first ping reply ({accel.upper()})")
a.grid(True, axis="y", alpha=0.3)

a = ax[1][1]
labels = ["veth\n(ceiling)", "vminit\nmacvtap", "vminit\ntap", "hand-made\nmacvtap", "vminit\npasst", "vminit\nslirp",
          "QEMU\nuser-mode"]
x = range(len(PATHS))
a.bar([i - 0.2 for i in x], [tput[p][0] for p, _ in PATHS], width=0.4, label="to the guest")
a.bar([i + 0.2 for i in x], [tput[p][1] for p, _ in PATHS], width=0.4, label="from the guest")
a.set_xticks(list(x))
a.set_xticklabels(labels)
if any(v > 0 for p, _ in PATHS for v in tput[p]):  # a log scale needs data
    a.set_yscale("log")
a.set_ylabel("Mbit/s (log)")
a.set_title(f"iperf3 throughput ({accel.upper()}, vhost-net {machine.get('vhost', '?')})")
a.legend()
a.grid(True, axis="y", which="both", alpha=0.3)

fig.suptitle(f"vminit {machine.get('revision', '')} — {machine.get('cpu', '')}, {machine.get('cores', '?')} cores, "
             f"{machine.get('date', '')}", fontsize=10)
fig.tight_layout()
fig.savefig(PNG, dpi=100)
