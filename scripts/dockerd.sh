#!/usr/bin/env bash
# scripts/dockerd.sh start|stop|status — make a Docker daemon available for the image build and the
# image tests, and take it down again afterwards.
#
#   start   If a daemon already answers `docker info`, do nothing (it is not ours, and `stop` will
#           leave it alone). Otherwise install docker.io with apt-get if dockerd is missing, start
#           dockerd in the background with its own data-root, pidfile and log under $STATE_DIR,
#           and wait (bounded) until it answers.
#   stop    Stop the daemon only if this script started it: SIGTERM to the PID it wrote to its
#           pidfile, a bounded wait, then SIGKILL. A daemon we did not start is never touched.
#   status  Say whether a daemon answers and whether it is ours.
#
# The daemon listens on the default socket (/var/run/docker.sock), so a plain `docker` works.
#
# Environment:
#   VMINIT_DOCKERD_STATE  state dir (data-root, pidfile, log)      [/var/lib/vminit-dockerd]
#   VMINIT_DOCKERD_WAIT   seconds to wait for the daemon to answer [60]
#   VMINIT_DOCKERD_STOP   seconds to wait for it to exit on stop   [30]
set -euo pipefail

STATE_DIR=${VMINIT_DOCKERD_STATE:-/var/lib/vminit-dockerd}
START_WAIT=${VMINIT_DOCKERD_WAIT:-60}
STOP_WAIT=${VMINIT_DOCKERD_STOP:-30}
PIDFILE=$STATE_DIR/dockerd.pid
LOGFILE=$STATE_DIR/dockerd.log
DATA_ROOT=$STATE_DIR/data

say() { printf 'dockerd.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# A daemon answers on the socket the docker CLI uses.
daemon_answers() {
    command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

# Prints the PID of the dockerd this script started, if it is still running; fails otherwise.
# The pidfile is written by dockerd itself (--pidfile); the process behind it must still be a
# dockerd, so a recycled PID is never signalled.
our_pid() {
    local pid exe
    [[ -r $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ $(basename "$exe") == dockerd ]] || return 1
    printf '%s\n' "$pid"
}

# True while process $1 runs (a zombie does not count).
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ -n $state && $state != Z ]]
}

ensure_dockerd_installed() {
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "dockerd is not installed and apt-get is not available"
    say "installing docker.io with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >&2 ||
        die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
}

start() {
    local pid launcher
    if daemon_answers; then
        if pid=$(our_pid); then
            say "dockerd already running (pid $pid, started by this script)"
        else
            say "a Docker daemon already answers; not starting another (stop will leave it alone)"
        fi
        return
    fi
    if pid=$(our_pid); then
        die "dockerd pid $pid (ours) is running but does not answer; see $LOGFILE or run '$0 stop'"
    fi

    [[ $(id -u) -eq 0 ]] || die "no Docker daemon answers, and starting one needs root"
    ensure_dockerd_installed
    mkdir -p "$STATE_DIR" "$DATA_ROOT"
    rm -f "$PIDFILE"

    say "starting dockerd (data-root $DATA_ROOT, log $LOGFILE)"
    # setsid: the daemon outlives this script and a Ctrl-C in the calling terminal; -w keeps
    # $launcher alive exactly as long as dockerd, so an early exit is noticed at once.
    setsid -w dockerd --data-root "$DATA_ROOT" --pidfile "$PIDFILE" \
        </dev/null >>"$LOGFILE" 2>&1 &
    launcher=$!

    local deadline=$((SECONDS + START_WAIT))
    until daemon_answers; do
        if ((SECONDS >= deadline)); then
            say "dockerd did not answer within ${START_WAIT}s; last log lines:"
            tail -n 20 "$LOGFILE" >&2 || true
            stop_ours || true
            # No pidfile yet: $launcher is dockerd itself (setsid execs it, as this background
            # job does not lead a process group), and our unreaped child, so its PID is ours.
            if alive "$launcher"; then
                kill -TERM "$launcher" 2>/dev/null || true
                for _ in {1..25}; do
                    alive "$launcher" || break
                    sleep 0.2
                done
                kill -KILL "$launcher" 2>/dev/null || true
            fi
            exit 1
        fi
        if ! alive "$launcher"; then
            say "dockerd exited during start; last log lines:"
            tail -n 20 "$LOGFILE" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    pid=$(our_pid) || die "dockerd answers but its pidfile $PIDFILE is missing"
    say "dockerd is up (pid $pid)"
}

# Stops the dockerd this script started, if any. Returns 0 when none of ours is left.
stop_ours() {
    local pid
    if ! pid=$(our_pid); then
        return 0
    fi
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_WAIT))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            say "dockerd pid $pid still running after ${STOP_WAIT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
    done
    alive "$pid" && die "dockerd pid $pid did not exit"
    rm -f "$PIDFILE"
    say "dockerd stopped"
}

stop() {
    if our_pid >/dev/null; then
        stop_ours
    elif daemon_answers; then
        say "the running Docker daemon was not started by this script; leaving it alone"
    else
        say "no dockerd started by this script is running"
    fi
}

status() {
    local pid
    if pid=$(our_pid); then
        say "dockerd pid $pid started by this script; answers: $(daemon_answers && echo yes || echo no)"
    elif daemon_answers; then
        say "a Docker daemon answers (not started by this script)"
    else
        say "no Docker daemon answers"
        return 1
    fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
