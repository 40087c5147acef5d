#!/usr/bin/env bash
# Stop the SLURM that tests/slurm/start-slurm.sh started in DIR, and remove DIR.
#
#   tests/slurm/stop-slurm.sh DIR                  cancel its jobs, stop its daemons, remove DIR
#   tests/slurm/stop-slurm.sh --keep DIR           the same, but keep DIR (and its logs)
#   tests/slurm/stop-slurm.sh --when-gone PID DIR  wait until process PID is gone, then stop
#
# Only processes this cluster started are signalled, by pid: the daemons from
# their pid files, and job step daemons (slurmstepd) with a file open in DIR,
# with their tasks. Safe to run twice, and on a DIR that is half made or gone.
set -uo pipefail

KEEP=
if [ "${1:-}" = --keep ]; then KEEP=1; shift; fi
if [ "${1:-}" = --when-gone ]; then
    OWNER=${2:?usage: stop-slurm.sh --when-gone PID DIR}
    shift 2
    while kill -0 "$OWNER" 2>/dev/null && [ -d "${1:?}" ]; do sleep 2; done
fi
DIR=${1:?usage: stop-slurm.sh [--keep] DIR}
[ -d "$DIR" ] || exit 0
DIR=$(cd "$DIR" && pwd)
export SLURM_CONF=$DIR/slurm.conf

# The pid in a pid file, if that process is still the daemon named (pids are reused).
pid_of() {
    local pid
    pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 0
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ] && echo "$pid"
    return 0
}

# Job step daemons of this cluster hold sockets in its spool folder.
stepds() {
    local proc pid
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$(cat "$proc/comm" 2>/dev/null)" = slurmstepd ] || continue
        if ls -l "$proc/fd" 2>/dev/null | grep -q -- "-> $DIR/"; then echo "$pid"; fi
    done
}

descendants() {
    local child
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

stop_pids() {  # TERM, up to 10 s, then KILL
    local pids=("$@") pid left
    [ ${#pids[@]} = 0 ] && return 0
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 20); do
        left=
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ -z "$left" ] && return 0
        sleep 0.5
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    return 0
}

ctld=$(pid_of slurmctld)
if [ -n "$ctld" ] && kill -0 "$ctld" 2>/dev/null && [ -f "$SLURM_CONF" ]; then
    # Cancel every job, and give them a few seconds to end the normal way.
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 20); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

# Whatever is left of the jobs: step daemons and their tasks.
steps=()
for stepd in $(stepds); do
    steps+=("$stepd")
    for task in $(descendants "$stepd"); do steps+=("$task"); done
done
stop_pids "${steps[@]}"

daemons=()
for name in slurmd slurmctld munged; do
    pid=$(pid_of $name)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && daemons+=("$pid")
done
stop_pids "${daemons[@]}"

if [ -z "$KEEP" ]; then rm -rf "$DIR"; else rm -rf "$DIR"/run/*.pid; fi
exit 0
