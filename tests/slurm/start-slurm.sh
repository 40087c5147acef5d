#!/usr/bin/env bash
# Start a real single-node SLURM (munged, slurmctld, slurmd) for the tests.
#
#   tests/slurm/start-slurm.sh DIR [OWNER_PID]
#
# Everything it makes lives in DIR: the munge key and socket, slurm.conf,
# state, spool, logs and pid files. Clients find the cluster through
#   export SLURM_CONF=DIR/slurm.conf
# (the conf names the munge socket), which DIR/env also says.
# tests/slurm/stop-slurm.sh DIR stops it and removes DIR. With OWNER_PID, a
# watchdog stops it too when that process is gone (a killed test run).
#
# Installs Debian's slurm-wlm and munge first if they are missing (root,
# apt-get, bounded time). Idempotent: a cluster already running from DIR is
# left alone. Exit status 77 means "cannot work here" (not root, no apt-get,
# package archive unreachable); the reason is the last line on stderr.
set -euo pipefail

DIR=${1:?usage: start-slurm.sh DIR [OWNER_PID]}
OWNER=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
INSTALL_SECONDS=${RUNSTORE_SLURM_INSTALL_SECONDS:-300}  # each apt-get command
PYTHON=${PYTHON:-python3}
READY_SECONDS=${RUNSTORE_SLURM_READY_SECONDS:-60}

cannot() { echo "cannot start SLURM here: $*" >&2; exit 77; }
fail() {
    echo "SLURM did not start: $*" >&2
    for log in "$DIR"/log/*.log; do
        [ -f "$log" ] && { echo "--- $log (last lines)" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    local missing="slurm-wlm and munge are not installed"
    [ "$(id -u)" = 0 ] || cannot "$missing, and installing them needs root"
    command -v apt-get >/dev/null || cannot "$missing, and there is no apt-get to install them"
    echo "installing slurm-wlm and munge with apt-get (at most ${INSTALL_SECONDS} s a step)" >&2
    # Keep the packages' maintainer scripts from starting system daemons: this
    # script starts its own, on its own key, socket and ports.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy && made_policy=1
    fi
    local status=0 log
    log=$(mktemp)
    {
        export DEBIAN_FRONTEND=noninteractive
        timeout "$INSTALL_SECONDS" apt-get update -q >"$log" 2>&1 \
            || timeout "$INSTALL_SECONDS" apt-get update -q >"$log" 2>&1 || status=$?
        if [ $status = 0 ]; then
            timeout "$INSTALL_SECONDS" apt-get install -y -q --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                slurm-wlm munge >>"$log" 2>&1 || status=$?
        fi
    } || status=$?
    [ -n "$made_policy" ] && rm -f $policy
    if [ $status != 0 ]; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        if [ $status = 124 ]; then cannot "apt-get took longer than ${INSTALL_SECONDS} s"; fi
        cannot "apt-get could not install slurm-wlm and munge (status $status; output above)"
    fi
    rm -f "$log"
}

free_port() {
    # A port nothing listens on now: slurmctld and slurmd of another cluster
    # (or of an earlier run) may hold the default 6817 and 6818.
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    local node cpus memory ctld_port slurmd_port
    node=$(hostname -s)
    # slurmd -C reports this machine as slurm sees it: CPUs, sockets, memory.
    local hardware
    hardware=$(slurmd -C | head -n 1) || fail "slurmd -C could not describe this machine"
    hardware=${hardware#NodeName=* }
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    cat > "$DIR/slurm.conf" <<EOF
# A single-node SLURM for runstore's tests, written by tests/slurm/start-slurm.sh.
ClusterName=runstore-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/socket/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: a container has neither systemd nor a delegated cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Cancelled jobs leave quickly.
KillWait=5
MinJobAge=10
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    echo "export SLURM_CONF=$DIR/slurm.conf" > "$DIR/env"
}

start_munge() {
    alive "$DIR/run/munged.pid" && return 0
    if [ ! -f "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 600 "$DIR/munge/munge.key"
    fi
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/socket/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munge.seed" \
        || fail "munged did not start"
}

wait_idle() {
    local deadline=$((SECONDS + READY_SECONDS)) state=
    while [ $SECONDS -lt $deadline ]; do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1) || state=
        case $state in
            idle) return 0 ;;
            down*|drain*|fail*)
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        alive "$DIR/run/slurmctld.pid" || fail "slurmctld exited"
        alive "$DIR/run/slurmd.pid" || fail "slurmd exited"
        sleep 0.5
    done
    fail "the node is not idle after ${READY_SECONDS} s (sinfo says '${state:-nothing}')"
}

install_packages
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# munged wants its socket's folder, and every folder above it, open to all
# (execute) and its key's folder closed: DIR cannot be inside a private folder
# such as pytest's tmp_path.
chmod 755 "$DIR"
mkdir -p "$DIR"/{munge,socket,state,spool,run,log}
chmod 700 "$DIR/munge"
chmod 755 "$DIR/socket"
export SLURM_CONF=$DIR/slurm.conf

if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && alive "$DIR/run/munged.pid"; then
    wait_idle
    echo "SLURM already running: $(cat "$DIR/env")"
    exit 0
fi
# Half a cluster (an earlier start that failed, daemons since killed): start afresh.
"$HERE/stop-slurm.sh" --keep "$DIR" >/dev/null 2>&1 || true
mkdir -p "$DIR"/{munge,socket,state,spool,run,log}

[ "$(id -u)" = 0 ] || cannot "this test cluster runs its daemons as root (SlurmUser=root); run as root"
write_config  # afresh: the ports of an earlier start may be taken now
start_munge
slurmctld -c -i || fail "slurmctld did not start"
slurmd || fail "slurmd did not start"
wait_idle

if [ -n "$OWNER" ]; then
    # Stop the cluster when the test run that started it is gone, however it ended.
    setsid "$HERE/stop-slurm.sh" --when-gone "$OWNER" "$DIR" </dev/null >/dev/null 2>&1 &
fi
echo "SLURM is up: $(cat "$DIR/env")"
