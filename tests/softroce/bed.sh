#!/usr/bin/env bash
# bed.sh - soft-RoCE test bed: boots N small qemu guests joined by one network, each with an
# rxe (soft-RoCE) device, runs a command in each over the host's own files, and reports.
#
# Why guests at all: the host kernel has no RDMA, and on the Debian 6.1 kernel rxe does not work
# across network namespaces, so every "host" of a test is its own tiny VM (see README.md).
#
# How it works, in short:
#   * --prepare fills a cache folder: the Debian kernel package (apt-get download, unpacked with
#     dpkg-deb -x, never installed), depmod on it, and an initramfs made of busybox-static, the
#     modules needed to reach the host's files (virtio, 9p, overlay) and a /init script.
#   * Each guest mounts the host's / read-only over virtio-9p, puts a tmpfs-backed overlayfs on
#     top (so every host path, /tmp included, is visible and the guest can still write), loads
#     virtio_net + rdma_rxe + rdma_ucm with the host's modprobe pointed at the cached kernel
#     tree, configures eth0 10.99.0.(i+1)/24 and `rdma link add rxe0 type rxe netdev eth0`, and
#     runs the command with `bash -c` in the caller's cwd.
#   * A second, writable 9p share (a per-run folder on the host) carries the commands in and the
#     outputs and exit codes back. Guests power off when their command ends.
#   * The guests' NICs are joined by a qemu "socket" multicast network on 127.0.0.1 with a
#     per-run group and port, so two bed runs at once do not see each other.
set -euo pipefail

readonly BED_NAME=bed.sh
readonly NET_PREFIX=10.99.0            # guest i gets ${NET_PREFIX}.(i+1)
readonly GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() {
    cat <<'EOF'
Usage: bed.sh [OPTIONS] [--] CMD [CMD...]
       bed.sh --prepare [--cache DIR]

Boot N qemu guests, each with a soft-RoCE device rxe0 on eth0, joined by one network, and run
a shell command in each. The guests see the host's whole filesystem (read-only underneath, with
a private writable tmpfs layer on top), so commands can run binaries straight from a build tree.

Options:
  --hosts N      number of guests (default 2; 1..16)
  --numa         give each guest 2 vCPUs and two NUMA nodes (one socket each, half the memory
                 each); default is 1 vCPU, one node
  --mem MB       memory per guest in MiB (default 2048: enough for a 1 GiB ibv_reg_mr)
  --timeout SEC  wall-clock limit for the whole run, boot included (default 300); on expiry all
                 guests are killed, the hosts that had not finished are named with the tail of
                 their consoles, and bed.sh exits 124
  --cache DIR    kernel/initramfs cache (default $TFAB_SOFTROCE_CACHE, else ./softroce-cache)
  --keep DIR     use DIR (created if needed) as the run's shared folder and keep it afterwards;
                 default is a temporary folder that is removed at exit
  --prepare      only fetch/unpack/build the cache (idempotent), then exit
  -h, --help     this text

Commands: with one CMD every guest runs it; otherwise give exactly N, CMD i runs on host i.
Each runs as `bash -c CMD` (stdin /dev/null, memlock unlimited, as root) in the caller's current
directory with a clean environment:
  TFAB_BED_HOST   this host's index i (0-based)
  TFAB_BED_HOSTS  N
  TFAB_BED_IP     10.99.0.(i+1)  (eth0; rxe0's RoCE v2 GID is ::ffff:10.99.0.(i+1))
  TFAB_BED_PEERS  all hosts' IPs, space separated, host 0 first
  TFAB_BED_OUT    writable folder on the host for this host's artifacts (<run>/host<i>)
  TFAB_BED_SYNC   writable folder shared by all guests (<run>/sync), for lib.sh's
                  bed_signal/bed_wait_signal
  TFAB_BED_LIB    path of lib.sh (helpers: source "$TFAB_BED_LIB")
  PATH, HOME=/root, LANG=C.UTF-8, TERM=dumb
The caller's other environment variables are NOT passed in.

Output: for each host a line `=== host i (10.99.0.x) exit=RC ===` and its command's combined
stdout/stderr. RC is the command's exit code, `bed-error` when the guest failed before the
command (boot, module, rxe: the reason and the console tail follow), or `timeout`.
Exit status: 0 iff every host's command exited 0; 124 on timeout; 1 otherwise; 2 on bad usage.

Timing: guests run under TCG emulation (KVM when /dev/kvm is usable); a guest takes several
seconds to boot and servers start slowly, and the guests do not start their commands at the
same moment. Clients MUST wait for their server and/or retry: see lib.sh (bed_retry,
bed_wait_signal, bed_wait_tcp_listen, bed_wait_cm_listen). Give servers their own `timeout`
so a failed client does not leave them waiting until --timeout.

TFAB_BED_FAULT=panic|modprobe|rxe[:HOST] injects a setup failure (to test error handling).

Examples:
  bed.sh -- 'ibv_devinfo -d rxe0'
  bed.sh --hosts 2 -- \
    'source "$TFAB_BED_LIB"; timeout 120 rping -s -a $TFAB_BED_IP -C 3 -v & bed_wait_cm_listen 60 && bed_signal up; wait $!' \
    'source "$TFAB_BED_LIB"; bed_wait_signal up 120 && bed_retry 10 rping -c -a 10.99.0.1 -C 3 -v'
EOF
}

die()  { echo "$BED_NAME: $*" >&2; exit 1; }
usage_die() { echo "$BED_NAME: $*" >&2; echo "Try '$BED_NAME --help'." >&2; exit 2; }
note() { echo "$BED_NAME: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
HOSTS=2
NUMA=0
MEM=2048
TIMEOUT=300
CACHE=${TFAB_SOFTROCE_CACHE:-./softroce-cache}
KEEP=
PREPARE_ONLY=0
CMDS=()

while (($#)); do
    case $1 in
        --hosts)   (($# >= 2)) || usage_die "--hosts needs a value"; HOSTS=$2; shift 2 ;;
        --numa)    NUMA=1; shift ;;
        --mem)     (($# >= 2)) || usage_die "--mem needs a value"; MEM=$2; shift 2 ;;
        --timeout) (($# >= 2)) || usage_die "--timeout needs a value"; TIMEOUT=$2; shift 2 ;;
        --cache)   (($# >= 2)) || usage_die "--cache needs a value"; CACHE=$2; shift 2 ;;
        --keep)    (($# >= 2)) || usage_die "--keep needs a value"; KEEP=$2; shift 2 ;;
        --prepare) PREPARE_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --)        shift; CMDS+=("$@"); break ;;
        -*)        usage_die "unknown option: $1" ;;
        *)         CMDS+=("$@"); break ;;
    esac
done

[[ $HOSTS =~ ^[0-9]+$ ]] && HOSTS=$((10#$HOSTS)) && ((HOSTS >= 1 && HOSTS <= 16)) || usage_die "--hosts must be 1..16"
[[ $MEM =~ ^[0-9]+$ ]] && MEM=$((10#$MEM)) && ((MEM >= 256)) || usage_die "--mem must be a number of MiB >= 256"
[[ $TIMEOUT =~ ^[0-9]+$ ]] && TIMEOUT=$((10#$TIMEOUT)) && ((TIMEOUT >= 1)) || usage_die "--timeout must be a positive number of seconds"
if ((NUMA)) && ((MEM % 2)); then usage_die "--mem must be even with --numa (split over 2 nodes)"; fi
if ((!PREPARE_ONLY)); then
    ((${#CMDS[@]} >= 1)) || usage_die "no command given"
    ((${#CMDS[@]} == 1 || ${#CMDS[@]} == HOSTS)) ||
        usage_die "give one CMD for all hosts or exactly $HOSTS (got ${#CMDS[@]})"
fi

mkdir -p -- "$CACHE" || die "cannot create cache folder $CACHE"
CACHE=$(cd -- "$CACHE" && pwd -P)
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

# ---------------------------------------------------------------------------------------------
# Cache preparation: kernel package -> unpacked tree -> depmod -> initramfs
# Every step leaves a stamp/result file and is skipped when it is there; a flock serializes
# concurrent bed runs sharing one cache.
# ---------------------------------------------------------------------------------------------

# The guest's /init (busybox ash, PID 1). It stays in the initramfs for the whole life of the
# guest and runs everything else chrooted into /newroot (the overlay over the host's /), so the
# kernel's module-autoload helper (/proc/sys/kernel/modprobe, resolved in PID 1's root) can be
# our wrapper /bin/bed-modprobe from the initramfs. It reads its settings from the run share.
guest_init() {
    cat <<'INIT'
#!/bin/busybox sh
# bed guest init: mount the host's files, bring up eth0 + rxe0, run this host's command.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

HOST=
FAULT=
for a in $(cat /proc/cmdline); do
    case $a in
        bed.host=*)  HOST=${a#bed.host=} ;;
        bed.fault=*) FAULT=${a#bed.fault=} ;;   # TFAB_BED_FAULT: tests bed's error paths
    esac
done

say() { echo "bed-guest[$HOST]: $*" > /dev/console; }
SHARE_OK=0
# Report a setup failure on the share (when it is mounted) and the console, then power off.
fail() {
    say "ERROR: $*"
    if [ "$SHARE_OK" = 1 ]; then
        echo "bed: host $HOST: $*" > /out/.bed/err.$HOST
        echo bed-error > /out/.bed/rc.$HOST
    fi
    dmesg | tail -n 15 > /dev/console
    sync
    poweroff -f
    sleep 10; echo o > /proc/sysrq-trigger
}
# Run a command in the host's root (the overlay) with a clean environment.
inroot() {
    chroot /newroot /usr/bin/env -i PATH="$GPATH" HOME=/root LANG=C.UTF-8 "$@"
}
# Same, but fail with the command's error output.
must() {
    what=$1; shift
    inroot "$@" > /tmp/must.err 2>&1 || fail "$what failed: $(tr '\n' ' ' < /tmp/must.err)"
}

[ -n "$HOST" ] || fail "no bed.host= on the kernel command line"
[ "$FAULT" != panic ] || { say "injected fault: init exits"; exit 1; }

# 1. Modules to reach the host (virtio, 9p, overlay), in dependency order.
for m in $(cat /mods/order); do
    insmod /mods/$m || fail "insmod $m failed"
done

# 2. The run share: settings, commands, results.
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none bedout /out ||
    fail "cannot mount the run share (9p tag bedout)"
[ -f /out/.bed/conf ] || fail "run share has no .bed/conf"
SHARE_OK=1
. /out/.bed/conf
IP=$BED_NET.$((HOST + 1))
echo "BED_KTREE='$BED_KTREE' BED_KVER='$BED_KVER'" > /etc/bed-modprobe.conf 2>/dev/null ||
    { mkdir -p /etc; echo "BED_KTREE='$BED_KTREE' BED_KVER='$BED_KVER'" > /etc/bed-modprobe.conf; }
[ "$(uname -r)" = "$BED_KVER" ] || fail "kernel $(uname -r) but the run expects $BED_KVER"

# 3. The host's / read-only over 9p, with a tmpfs upper layer: everything (also /tmp) is
#    visible at its host path, and writes stay in the guest.
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /lower ||
    fail "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=755 upper /upper
mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot ||
    fail "cannot mount overlayfs over the 9p root"
R=/newroot
mnt() { mount "$@" || fail "mount $* failed"; }
mnt -t proc proc $R/proc
mnt -t sysfs sys $R/sys
mnt -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mnt -t devpts -o ptmxmode=666 devpts $R/dev/pts
mnt -t tmpfs -o mode=1777 shm $R/dev/shm
ln -sfn /proc/self/fd $R/dev/fd        # bash process substitution needs /dev/fd
ln -sfn /proc/self/fd/0 $R/dev/stdin
ln -sfn /proc/self/fd/1 $R/dev/stdout
ln -sfn /proc/self/fd/2 $R/dev/stderr
mnt -t tmpfs -o mode=755 run $R/run
# The kernel's modules at the usual place too, so a plain `modprobe X` works in commands.
mkdir -p "$R/lib/modules/$BED_KVER"
mount --bind "$R$BED_KTREE/lib/modules/$BED_KVER" "$R/lib/modules/$BED_KVER" ||
    fail "cannot bind the module tree $BED_KTREE/lib/modules/$BED_KVER"
# The writable run share at its host path, so host and guest paths agree.
mount --bind /out "$R$BED_RUN" || fail "cannot bind the run share at $BED_RUN"
GPATH=$BED_PATH

# 4. Kernel module autoload (e.g. crypto-crc32 for rdma_rxe) through our wrapper.
echo /bin/bed-modprobe > /proc/sys/kernel/modprobe
MODS="virtio_net rdma_rxe ib_uverbs rdma_ucm"
[ "$FAULT" != modprobe ] || MODS="$MODS bed_no_such_module"
for m in $MODS; do
    must "modprobe $m" modprobe -d "$BED_KTREE" -S "$BED_KVER" $m
done

# 5. Network.
n=0
while [ ! -e /sys/class/net/eth0 ]; do
    n=$((n + 1)); [ $n -le 100 ] || fail "no eth0 after loading virtio_net"; sleep 0.1
done
must "ip link set lo up" ip link set lo up
must "ip addr add $IP/24 dev eth0" ip addr add $IP/24 dev eth0
must "ip link set eth0 up" ip link set eth0 up

# 6. Soft-RoCE.
RXE_NETDEV=eth0
[ "$FAULT" != rxe ] || RXE_NETDEV=bed_no_such_netdev
must "rdma link add rxe0 type rxe netdev $RXE_NETDEV" rdma link add rxe0 type rxe netdev $RXE_NETDEV
n=0
until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
    n=$((n + 1))
    [ $n -le 200 ] || fail "rxe0 port not ACTIVE after 20 s: $(cat /sys/class/infiniband/rxe0/ports/1/state 2>&1)"
    sleep 0.1
done
# Wait for the IPv4-mapped RoCE v2 GID (::ffff:a.b.c.d) to be in the GID table.
hex=$(echo $IP | awk -F. '{printf "%02x%02x:%02x%02x", $1, $2, $3, $4}')
n=0
until cat /sys/class/infiniband/rxe0/ports/1/gids/* 2>/dev/null | grep -q "0000:0000:0000:0000:0000:ffff:$hex"; do
    n=$((n + 1)); [ $n -le 100 ] || fail "no GID ::ffff:$IP on rxe0 after 10 s"; sleep 0.1
done
for d in /dev/infiniband/uverbs0 /dev/infiniband/rdma_cm; do
    [ -e $d ] || fail "$d missing"
done

# 7. The command.
read up idle < /proc/uptime
echo "$up" > /out/.bed/ready.$HOST
say "eth0 $IP and rxe0 ACTIVE at ${up}s; running the command"
ulimit -l unlimited
ulimit -n 65536 2>/dev/null
cd /
chroot /newroot /usr/bin/env -i PATH="$GPATH" HOME=/root LANG=C.UTF-8 TERM=dumb \
    TFAB_BED_HOST=$HOST TFAB_BED_HOSTS=$BED_HOSTS TFAB_BED_IP=$IP TFAB_BED_PEERS="$BED_PEERS" \
    TFAB_BED_OUT="$BED_RUN/host$HOST" TFAB_BED_SYNC="$BED_RUN/sync" TFAB_BED_LIB="$BED_LIB" \
    TFAB_BED_CWD="$BED_CWD" \
    /bin/bash -c 'cd -- "$TFAB_BED_CWD" || exit 126; c=$(cat -- "$1") || exit 126; exec /bin/bash -c "$c"' \
    bed-run "$BED_RUN/.bed/cmd.$HOST" < /dev/null > /out/.bed/out.$HOST 2>&1
rc=$?
read up idle < /proc/uptime
echo "$up" > /out/.bed/end.$HOST
say "command exited $rc at ${up}s; powering off"
echo $rc > /out/.bed/rc.$HOST
sync
umount "$R$BED_RUN" 2>/dev/null
umount /out 2>/dev/null
poweroff -f
sleep 10; echo o > /proc/sysrq-trigger
INIT
}

# Called by the guest kernel to autoload modules: run the host's kmod modprobe, chrooted into
# the host's root, against the cached kernel tree.
guest_modprobe() {
    cat <<'WRAP'
#!/bin/sh
. /etc/bed-modprobe.conf
exec chroot /newroot /sbin/modprobe -d "$BED_KTREE" -S "$BED_KVER" "$@"
WRAP
}

# Modules the initramfs loads itself; their dependencies are resolved with modprobe.
readonly INITRAMFS_MODULES="virtio_pci 9pnet_virtio 9p overlay"

# Pick the kernel version: the one linux-image-amd64 depends on now (apt-cache), or, with no
# package lists, the one a previous prepare recorded in the cache.
resolve_kver() {
    local dep
    dep=$(apt-cache depends linux-image-amd64 2>/dev/null |
          sed -n 's/^ *Depends: linux-image-\([0-9].*\)$/\1/p' | head -n1) || true
    if [[ -n $dep ]]; then
        echo "$dep"
    elif [[ -s $CACHE/kver && -e $CACHE/kernel-$(cat "$CACHE/kver")/.depmod-done ]]; then
        note "apt-cache does not know linux-image-amd64 (no package lists?); using the cached kernel $(cat "$CACHE/kver")"
        cat "$CACHE/kver"
    else
        die "apt-cache does not know linux-image-amd64: the package lists are missing. Fix: run 'apt-get update' (as root), then retry."
    fi
}

prepare() {
    local kver deb tree tmp hash initrd stage m
    for t in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip sha256sum flock; do
        command -v "$t" >/dev/null || die "missing host tool '$t' (packages: apt, dpkg, kmod, cpio, gzip, coreutils, util-linux)"
    done
    [[ -x /bin/busybox ]] && file_is_static /bin/busybox ||
        die "need a static /bin/busybox: apt-get install busybox-static"

    exec 9>"$CACHE/.lock"
    flock 9

    kver=$(resolve_kver)
    tree=$CACHE/kernel-$kver

    # 1. Download the package (never installed on the host).
    mkdir -p "$CACHE/deb"
    deb=$(ls "$CACHE/deb/linux-image-${kver}_"*.deb 2>/dev/null | head -n1 || true)
    if [[ -z $deb ]]; then
        note "downloading linux-image-$kver ..."
        tmp=$(mktemp -d "$CACHE/deb/.dl.XXXXXX")
        if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$kver") >"$tmp/log" 2>&1; then
            cat "$tmp/log" >&2
            rm -rf -- "$tmp"
            die "apt-get download linux-image-$kver failed (see above). If the package lists are missing or stale, fix with: apt-get update"
        fi
        mv "$tmp"/linux-image-*.deb "$CACHE/deb/"
        rm -rf -- "$tmp"
        deb=$(ls "$CACHE/deb/linux-image-${kver}_"*.deb | head -n1)
    fi

    # 2. Unpack it.
    if [[ ! -e $tree/.unpacked ]]; then
        note "unpacking $(basename "$deb") ..."
        rm -rf -- "$tree"
        dpkg-deb -x "$deb" "$tree"
        [[ -f $tree/boot/vmlinuz-$kver && -d $tree/lib/modules/$kver ]] ||
            die "$deb has no boot/vmlinuz-$kver or lib/modules/$kver"
        touch "$tree/.unpacked"
    fi

    # 3. The package ships no modules.dep: make one.
    if [[ ! -e $tree/.depmod-done ]]; then
        note "depmod $kver ..."
        depmod -b "$tree" "$kver"
        touch "$tree/.depmod-done"
    fi

    # 4. The initramfs: busybox, /init, the modprobe wrapper and the modules to reach the host.
    #    Its name carries a hash of what goes in, so editing this script rebuilds it.
    hash=$( { guest_init; guest_modprobe; echo "$INITRAMFS_MODULES"; sha256sum /bin/busybox; } |
            sha256sum | cut -c1-12)
    initrd=$CACHE/initramfs-$kver-$hash.cpio.gz
    if [[ ! -s $initrd ]]; then
        note "building $(basename "$initrd") ..."
        stage=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
        mkdir -p "$stage"/{bin,mods,proc,sys,dev,tmp,etc}
        cp /bin/busybox "$stage/bin/busybox"
        guest_init > "$stage/init"
        guest_modprobe > "$stage/bin/bed-modprobe"
        chmod 755 "$stage/init" "$stage/bin/bed-modprobe"
        # modprobe --show-depends prints "insmod /path/mod.ko" in load order.
        : > "$stage/mods/order"
        while read -r verb path _; do
            [[ $verb == insmod ]] || continue
            m=$(basename "$path")
            case $m in
                *.ko)     cp "$path" "$stage/mods/$m" ;;
                *.ko.xz)  m=${m%.xz};  xz -dc "$path" > "$stage/mods/$m" ;;
                *.ko.zst) m=${m%.zst}; zstd -qdc "$path" > "$stage/mods/$m" ;;
                *.ko.gz)  m=${m%.gz};  gzip -dc "$path" > "$stage/mods/$m" ;;
                *) die "unexpected module file $path" ;;
            esac
            grep -qxF "$m" "$stage/mods/order" || echo "$m" >> "$stage/mods/order"
        done < <(modprobe -d "$tree" -S "$kver" --show-depends -a $INITRAMFS_MODULES)
        [[ -s $stage/mods/order ]] || die "no modules resolved for the initramfs"
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
            gzip -1 > "$initrd.tmp"
        mv "$initrd.tmp" "$initrd"
        rm -rf -- "$stage"
        # Older initramfs images of this kernel are stale now.
        find "$CACHE" -maxdepth 1 -name "initramfs-$kver-*.cpio.gz" ! -name "$(basename "$initrd")" -delete
    fi

    echo "$kver" > "$CACHE/kver.tmp" && mv "$CACHE/kver.tmp" "$CACHE/kver"
    ln -sfn "$(basename "$initrd")" "$CACHE/initramfs.cpio.gz"
    exec 9>&-

    KVER=$kver
    KTREE=$tree
    INITRD=$initrd
    KERNEL=$tree/boot/vmlinuz-$kver
}

file_is_static() {
    # A static ELF64 binary has no PT_INTERP (type 3) program header; read the headers with od
    # rather than needing `file` or binutils.
    local phoff phentsize phnum i type
    phoff=$(od -An -t u8 -j 32 -N 8 "$1" | tr -d ' ')
    phentsize=$(od -An -t u2 -j 54 -N 2 "$1" | tr -d ' ')
    phnum=$(od -An -t u2 -j 56 -N 2 "$1" | tr -d ' ')
    [[ -n $phoff && -n $phentsize && -n $phnum ]] || return 1
    for ((i = 0; i < phnum; i++)); do
        type=$(od -An -t u4 -j $((phoff + i * phentsize)) -N 4 "$1" | tr -d ' ')
        [[ $type != 3 ]] || return 1
    done
}

T0=$(date +%s.%N)
prepare
if ((PREPARE_ONLY)); then
    note "cache ready in $CACHE: kernel $KVER, $(basename "$INITRD") ($(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}") s)"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null || die "missing qemu-system-x86_64: apt-get install qemu-system-x86"

# The run share. It must be a host path the guests also see through the root share (any is).
if [[ -n $KEEP ]]; then
    mkdir -p -- "$KEEP"
    RUN=$(cd -- "$KEEP" && pwd -P)
    rm -rf -- "$RUN/.bed" "$RUN/sync"
else
    RUN=$(mktemp -d "${TMPDIR:-/tmp}/tfab-bed.XXXXXX")
    RUN=$(cd -- "$RUN" && pwd -P)
fi
mkdir -p "$RUN/.bed" "$RUN/sync"

QEMU_PIDS=()
cleanup() {
    local p
    for p in "${QEMU_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${QEMU_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    QEMU_PIDS=()
    if [[ -z $KEEP && -n ${RUN:-} && -d $RUN/.bed ]]; then rm -rf -- "$RUN"; fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

# Settings for the guests' /init (busybox ash reads this, so quote for POSIX sh).
shq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
PEERS=
for ((i = 0; i < HOSTS; i++)); do PEERS+="${PEERS:+ }$NET_PREFIX.$((i + 1))"; done
{
    echo "BED_HOSTS=$HOSTS"
    echo "BED_NET=$NET_PREFIX"
    echo "BED_PEERS=$(shq "$PEERS")"
    echo "BED_RUN=$(shq "$RUN")"
    echo "BED_CWD=$(shq "$(pwd -P)")"
    echo "BED_KTREE=$(shq "$KTREE")"
    echo "BED_KVER=$(shq "$KVER")"
    echo "BED_PATH=$(shq "$GUEST_PATH")"
    echo "BED_LIB=$(shq "$HERE/lib.sh")"
} > "$RUN/.bed/conf"
for ((i = 0; i < HOSTS; i++)); do
    mkdir -p "$RUN/host$i"
    rm -f "$RUN/.bed/"*".$i"
    if ((${#CMDS[@]} == 1)); then c=${CMDS[0]}; else c=${CMDS[i]}; fi
    printf '%s\n' "$c" > "$RUN/.bed/cmd.$i"
done

# A per-run multicast group and port, so concurrent runs do not share a network. Skip ports
# something on this machine already uses.
while :; do
    MCAST=239.255.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
    MPORT=$((20000 + RANDOM % 40000))
    ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ":$MPORT\$" || break
done

qesc() { printf '%s' "${1//,/,,}"; }     # qemu option values: ',' is written ',,'

# TFAB_BED_FAULT=KIND[:HOST] injects a setup failure, to test bed's own error paths (and the
# callers' handling of them): panic (guest init dies before the share is up), modprobe, rxe.
fault_arg() {
    local spec=${TFAB_BED_FAULT:-} kind host=
    [[ -n $spec ]] || return 0
    kind=${spec%%:*}
    [[ $spec == *:* ]] && host=${spec#*:}
    [[ -z $host || $host == "$1" ]] && printf ' bed.fault=%s' "$kind"
    return 0
}

# shellcheck disable=SC2054  # the commas are inside qemu arguments
if [[ -w /dev/kvm ]]; then
    ACCEL=(-accel kvm -cpu host)
else
    ACCEL=(-accel tcg,thread=multi -cpu max)
fi
# shellcheck disable=SC2054
if ((NUMA)); then
    half=$((MEM / 2))
    CPU_MEM=(-smp 2,sockets=2,cores=1,threads=1 -m "${MEM}M"
             -object "memory-backend-ram,id=m0,size=${half}M"
             -object "memory-backend-ram,id=m1,size=${half}M"
             -numa node,nodeid=0,cpus=0,memdev=m0
             -numa node,nodeid=1,cpus=1,memdev=m1)
else
    CPU_MEM=(-smp 1 -m "${MEM}M")
fi

note "booting $HOSTS guest(s) ($([[ ${ACCEL[1]} == kvm ]] && echo KVM || echo TCG), $MEM MiB$( ((NUMA)) && echo ', 2 NUMA nodes'), net $MCAST:$MPORT), run folder $RUN"
T_BOOT=$(date +%s.%N)
for ((i = 0; i < HOSTS; i++)); do
    qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
        -machine pc "${ACCEL[@]}" "${CPU_MEM[@]}" \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 bed.host=$i$(fault_arg "$i")" \
        -chardev "file,id=con0,path=$(qesc "$RUN/.bed/console.$i")" -serial chardev:con0 \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$(qesc "$RUN"),mount_tag=bedout,security_model=none,multidevs=remap" \
        -netdev "socket,id=n0,mcast=$MCAST:$MPORT,localaddr=127.0.0.1" \
        -device "virtio-net-pci,netdev=n0,mac=52:54:00:99:00:$(printf %02x $((i + 1)))" \
        </dev/null >"$RUN/.bed/qemu.$i" 2>&1 &
    QEMU_PIDS[i]=$!
done

# Wait for all guests, the deadline, or a bed error (which aborts the others: a broken bed
# must not leave the other hosts waiting for it until the timeout).
deadline=$(( $(date +%s) + TIMEOUT ))
declare -a STATE   # running | finished | timeout | aborted
for ((i = 0; i < HOSTS; i++)); do STATE[i]=running; done
abort=0
while :; do
    alive=0
    for ((i = 0; i < HOSTS; i++)); do
        [[ ${STATE[i]} == running ]] || continue
        if kill -0 "${QEMU_PIDS[i]}" 2>/dev/null; then
            alive=1
        else
            wait "${QEMU_PIDS[i]}" 2>/dev/null || true
            STATE[i]=finished
            rc=$(cat "$RUN/.bed/rc.$i" 2>/dev/null || true)
            [[ $rc =~ ^[0-9]+$ ]] || abort=1
        fi
    done
    ((alive)) || break
    if ((abort)); then
        note "a guest failed to set up; stopping the others"
        for ((i = 0; i < HOSTS; i++)); do
            [[ ${STATE[i]} == running ]] && { kill "${QEMU_PIDS[i]}" 2>/dev/null || true; STATE[i]=aborted; }
        done
        break
    fi
    if (( $(date +%s) >= deadline )); then
        for ((i = 0; i < HOSTS; i++)); do
            [[ ${STATE[i]} == running ]] && { kill "${QEMU_PIDS[i]}" 2>/dev/null || true; STATE[i]=timeout; }
        done
        break
    fi
    sleep 0.5
done
for p in "${QEMU_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
QEMU_PIDS=()
T_END=$(date +%s.%N)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
console_tail() {
    echo "--- console of host $1 (last 40 lines) ---"
    tail -n 40 "$RUN/.bed/console.$1" 2>/dev/null | tr -d '\r' || true
    if [[ -s $RUN/.bed/qemu.$1 ]]; then
        echo "--- qemu messages of host $1 ---"
        tail -n 20 "$RUN/.bed/qemu.$1"
    fi
    echo "--- end of console of host $1 ---"
}
status=0
timed_out=()
timing=
for ((i = 0; i < HOSTS; i++)); do
    ip=$NET_PREFIX.$((i + 1))
    rc=$(cat "$RUN/.bed/rc.$i" 2>/dev/null || true)
    if [[ -f $RUN/.bed/ready.$i && -f $RUN/.bed/end.$i ]]; then
        timing+=" host$i: ready $(cat "$RUN/.bed/ready.$i")s, cmd $(awk -v a="$(cat "$RUN/.bed/ready.$i")" -v b="$(cat "$RUN/.bed/end.$i")" 'BEGIN{printf "%.1f", b - a}')s;"
    fi
    case ${STATE[i]}:$rc in
        timeout:*)
            echo "=== host $i ($ip) exit=timeout ==="
            timed_out+=("$i")
            if [[ -s $RUN/.bed/out.$i ]]; then
                echo "--- command output so far (last 40 lines) ---"
                tail -n 40 "$RUN/.bed/out.$i"
            fi
            console_tail "$i"
            ;;
        *:bed-error)
            echo "=== host $i ($ip) exit=bed-error ==="
            cat "$RUN/.bed/err.$i" 2>/dev/null || echo "bed: host $i: setup failed"
            console_tail "$i"
            status=1
            ;;
        aborted:*)
            echo "=== host $i ($ip) exit=bed-error ==="
            echo "bed: host $i: stopped because another guest failed to set up"
            status=1
            ;;
        *)
            if [[ $rc =~ ^[0-9]+$ ]]; then
                echo "=== host $i ($ip) exit=$rc ==="
                cat "$RUN/.bed/out.$i" 2>/dev/null || true
                ((rc == 0)) || status=1
            else
                echo "=== host $i ($ip) exit=bed-error ==="
                echo "bed: host $i: the guest ended without a result (crash, panic or failed boot)"
                [[ -s $RUN/.bed/out.$i ]] && { echo "--- command output so far ---"; cat "$RUN/.bed/out.$i"; }
                console_tail "$i"
                status=1
            fi
            ;;
    esac
done
note "guests finished in $(awk -v a="$T_BOOT" -v b="$T_END" 'BEGIN{printf "%.1f", b - a}') s${timing:+ (guest uptime at command start, command time:${timing%;})}"
if ((${#timed_out[@]})); then
    note "timeout after $TIMEOUT s: host(s) ${timed_out[*]} did not finish"
    exit 124
fi
exit "$status"
