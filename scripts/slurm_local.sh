#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, in a folder of its own: writes a
# minimal slurm.conf (the node's CPUs and memory from `slurmd -C`), a munge key,
# and starts munged, slurmctld and slurmd. Needs root (slurmd runs jobs as their
# user) and the packages of `./scripts/setup.sh --slurm`.
#
#   scripts/slurm_local.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_local.sh stop DIR
set -euo pipefail

cmd=${1:?usage: slurm_local.sh start|stop DIR}
dir=${2:?usage: slurm_local.sh start|stop DIR}

stop() {
    for name in slurmd slurmctld munged; do
        if [[ -f "$dir/$name.pid" ]]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
        fi
    done
    # wait for them to go, so that the folder can be removed
    for name in slurmd slurmctld munged; do
        if [[ -f "$dir/$name.pid" ]]; then
            pid=$(cat "$dir/$name.pid")
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            rm -f "$dir/$name.pid"
        fi
    done
}

start() {
    mkdir -p "$dir"/{state,spool,log}
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir"
    host=$(hostname -s)
    # "NodeName=vm CPUs=2 ... RealMemory=24105": the node line, as slurmd sees it
    node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
    cat > "$dir/slurm.conf" <<CONF
ClusterName=rnnlab-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
SlurmctldPort=${SLURM_LOCAL_PORT:-16817}
SlurmdPort=$(( ${SLURM_LOCAL_PORT:-16817} + 1 ))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
ReturnToService=2
MpiDefault=none
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    if [[ ! -f "$dir/munge.key" ]]; then
        dd if=/dev/urandom of="$dir/munge.key" bs=1 count=1024 status=none
        chmod 400 "$dir/munge.key"
    fi
    munged --force -S "$dir/munge.socket" --key-file "$dir/munge.key" \
        --pid-file "$dir/munged.pid" --log-file "$dir/log/munged.log" \
        --seed-file "$dir/munged.seed"
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm_local.sh: the node did not come up; logs in $dir/log" >&2
    sinfo >&2 || true
    tail -n 20 "$dir"/log/*.log >&2 || true
    return 1
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: slurm_local.sh start|stop DIR" >&2; exit 2 ;;
esac
