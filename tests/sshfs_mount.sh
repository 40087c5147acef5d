#!/bin/sh
# Mount a real network filesystem for tests: SOURCE over sshfs (SFTP to an sshd on
# 127.0.0.1) at MOUNTPOINT. Installs openssh-server and sshfs if they are missing
# (Debian/Ubuntu, as root). Keys, config and the sshd pid go into WORKDIR. Metadata
# is not cached (like NFS mounted with noac, lookupcache=none), so that what one side
# writes the other sees at once, as tests expect.
#
#   tests/sshfs_mount.sh mount WORKDIR SOURCE MOUNTPOINT
#   tests/sshfs_mount.sh umount WORKDIR MOUNTPOINT
#
# Exits non-zero with the reason on stderr when it cannot work here (not root, no
# /dev/fuse, no apt-get, no network to install from).
set -eu

action=$1
work=$2

if [ "$action" = umount ]; then
    mountpoint=$3
    fusermount3 -u "$mountpoint" 2>/dev/null || fusermount -u "$mountpoint" 2>/dev/null \
        || umount -l "$mountpoint" 2>/dev/null || true
    if [ -f "$work/sshd.pid" ]; then
        kill "$(cat "$work/sshd.pid")" 2>/dev/null || true
    fi
    exit 0
fi

source=$3
mountpoint=$4
[ "$(id -u)" = 0 ] || { echo "needs root to start sshd and mount" >&2; exit 2; }
[ -e /dev/fuse ] || { echo "no /dev/fuse: FUSE filesystems cannot be mounted here" >&2; exit 2; }
if ! command -v sshfs >/dev/null || [ ! -x /usr/sbin/sshd ]; then
    command -v apt-get >/dev/null || { echo "sshfs is missing and there is no apt-get" >&2; exit 2; }
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        openssh-server sshfs) >"$work/apt.log" 2>&1 \
        || { echo "could not install sshfs and openssh-server (see $work/apt.log)" >&2; exit 2; }
fi
mkdir -p /run/sshd "$source" "$mountpoint"
ssh-keygen -q -t ed25519 -N '' -f "$work/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$work/userkey"
cp "$work/userkey.pub" "$work/authorized_keys"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/hostkey
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $work/sshd.pid
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -s "$work/sshd.pid" ] && break
    sleep 0.2
done
sshfs -p "$port" -o "IdentityFile=$work/userkey,StrictHostKeyChecking=no" \
    -o "UserKnownHostsFile=/dev/null,BatchMode=yes" \
    -o "dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0" \
    "root@127.0.0.1:$source" "$mountpoint" \
    || { echo "sshfs could not mount (see $work/sshd.log)" >&2; exit 2; }
