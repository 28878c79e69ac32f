#!/usr/bin/env bash
# Build Paddock's runbook images locally. Idempotent and cached: the rootfs
# image is skipped when it exists (or re-imported from the cached tarball), the
# others rely on the docker build layer cache, so a warm run takes seconds.
#
#   scripts/images.sh                 # = base locked
#   scripts/images.sh base locked web # or: all
#
# See docs/images.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/images.sh [options] [TARGET...]

Targets (default: base locked):
  rootfs   paddock-rootfs:bookworm  debootstrap --variant=minbase + docker import
  base     paddock-base:latest      shell, git, curl, python3, user paddock (1000)
  locked   paddock-locked:latest    FROM scratch: /bin/sh (dash) + python3 only
  web      paddock-web:latest       paddock-base + nodejs, npm, chromium (big)
  agents   paddock-agents:latest    paddock-base + the ACP agents of scripts/agents.sh
                                    (Node 24, Claude Code's and Codex's ACP adapters,
                                    Gemini CLI, OpenClaw) at /opt/paddock-agents
  all      all of the above
Dependencies are built first (base/locked need rootfs, web needs base).

Options:
  --ca-bundle FILE   extra CA bundle (PEM) trusted inside builds and installed
                     in paddock-base/web. Default: $PADDOCK_CA_BUNDLE, else
                     /etc/ssl/certs/ca-certificates.crt when it exists.
                     "none" disables.
  --network MODE     docker build network (bridge|host|...). Default:
                     $PADDOCK_BUILD_NETWORK, else auto (bridge if it reaches the
                     Debian mirror, otherwise host).
  --rebuild-rootfs   re-run debootstrap even if the image/tarball exists.
  --no-cache         pass --no-cache to docker build.
  -h, --help         this help.

Environment:
  PADDOCK_IMAGE_CACHE            cache dir (default /var/cache/paddock-images):
                                 rootfs tarball + debootstrap .deb cache
  PADDOCK_DEBIAN_MIRROR          default http://deb.debian.org/debian
  PADDOCK_DEBIAN_SECURITY_MIRROR default http://deb.debian.org/debian-security
  PADDOCK_AGENTS_DIR             the agents' prefix (default $cache_dir/agents)
EOF
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'images.sh: error: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
images_dir="$repo/images"
suite=bookworm
cache_dir=${PADDOCK_IMAGE_CACHE:-/var/cache/paddock-images}
mirror=${PADDOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${PADDOCK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ca_bundle=${PADDOCK_CA_BUNDLE-}
network=${PADDOCK_BUILD_NETWORK:-auto}
rebuild_rootfs=0
no_cache=()
targets=()

while [ $# -gt 0 ]; do
    case $1 in
        --ca-bundle) [ $# -ge 2 ] || die "--ca-bundle needs a FILE"; ca_bundle=$2; shift 2 ;;
        --ca-bundle=*) ca_bundle=${1#*=}; shift ;;
        --network) [ $# -ge 2 ] || die "--network needs a MODE"; network=$2; shift 2 ;;
        --network=*) network=${1#*=}; shift ;;
        --rebuild-rootfs) rebuild_rootfs=1; shift ;;
        --no-cache) no_cache=(--no-cache); shift ;;
        -h|--help) usage; exit 0 ;;
        rootfs|base|locked|web|agents) targets+=("$1"); shift ;;
        all) targets+=(rootfs base locked web agents); shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(base locked)

want() { local t; for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }
# Dependencies.
if want web || want agents; then targets+=(base); fi
if want base || want locked; then targets+=(rootfs); fi

if [ -z "$ca_bundle" ] && [ -z "${PADDOCK_CA_BUNDLE+set}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    ca_bundle=/etc/ssl/certs/ca-certificates.crt
fi
[ "$ca_bundle" = none ] && ca_bundle=
if [ -n "$ca_bundle" ] && [ ! -r "$ca_bundle" ]; then die "CA bundle not readable: $ca_bundle"; fi

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "cannot talk to the docker daemon (is dockerd running? are you in the docker group?)"
# Without the buildx plugin, modern docker CLIs need DOCKER_BUILDKIT=0 for the
# classic builder; the Dockerfiles work with both builders.
if [ -z "${DOCKER_BUILDKIT-}" ] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

tmp_root=$(mktemp -d "${TMPDIR:-/tmp}/paddock-images.XXXXXX")
bootstrap_dir=
cleanup() {
    local m
    if [ -n "$bootstrap_dir" ] && [ -d "$bootstrap_dir" ]; then
        # debootstrap may leave proc/sys/dev mounts behind when it fails.
        for m in dev/pts dev proc sys; do
            if mountpoint -q "$bootstrap_dir/$m" 2>/dev/null; then umount -l "$bootstrap_dir/$m" || true; fi
        done
        rm -rf --one-file-system "$bootstrap_dir"
    fi
    rm -rf "$tmp_root"
}
trap cleanup EXIT

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

declare -A status
order=()
record() { status[$1]=$2; order+=("$1"); }

# ---------------------------------------------------------------- rootfs ----
rootfs_image=paddock-rootfs:$suite

build_rootfs() {
    local arch tarball
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    tarball="$cache_dir/rootfs-$suite-$arch.tar"

    if [ "$rebuild_rootfs" = 0 ] && [ -n "$(image_id "$rootfs_image")" ]; then
        log "$rootfs_image exists: skipping (use --rebuild-rootfs to redo)"
        record "$rootfs_image" "skipped (exists)"
        return
    fi

    if [ "$rebuild_rootfs" = 1 ] || [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root: run as root (or sudo) to build $rootfs_image"
        mkdir -p "$cache_dir/debs"
        # One debootstrap per cache dir at a time.
        exec 9>"$cache_dir/.lock"
        if command -v flock >/dev/null && ! flock -n 9; then
            die "another images.sh is building the rootfs in $cache_dir"
        fi
        bootstrap_dir="$cache_dir/rootfs-$suite-$arch.tmp"
        cleanup_bootstrap_dir_only
        log "debootstrap --variant=minbase $suite ($mirror) -> $bootstrap_dir"
        debootstrap --variant=minbase --cache-dir="$cache_dir/debs" \
            "$suite" "$bootstrap_dir" "$mirror" >"$tmp_root/debootstrap.log" 2>&1 || {
            tail -n 30 "$tmp_root/debootstrap.log" >&2
            die "debootstrap failed"
        }
        tidy_rootfs "$bootstrap_dir"
        log "packing $tarball"
        tar --numeric-owner --xattrs -C "$bootstrap_dir" -cf "$tarball.tmp" .
        mv -f "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$bootstrap_dir"
        bootstrap_dir=
    else
        log "importing $rootfs_image from cached $tarball"
    fi

    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change 'LABEL paddock.runbook=rootfs' \
        "$tarball" "$rootfs_image" >/dev/null
    record "$rootfs_image" "built"
}

cleanup_bootstrap_dir_only() {
    local m
    for m in dev/pts dev proc sys; do
        if mountpoint -q "$bootstrap_dir/$m" 2>/dev/null; then umount -l "$bootstrap_dir/$m" || true; fi
    done
    rm -rf --one-file-system "$bootstrap_dir"
}

tidy_rootfs() {
    local d=$1
    rm -f "$d/etc/apt/sources.list"
    cat >"$d/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Container-friendly apt/dpkg defaults (as in Debian's official images,
    # plus skipping docs/man pages; copyright files are kept).
    cat >"$d/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$d/etc/apt/apt.conf.d/docker-no-languages"
    cat >"$d/etc/dpkg/dpkg.cfg.d/paddock-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
EOF
    rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/cache/apt/*.bin \
        "$d"/var/lib/apt/lists/* "$d"/var/log/* "$d"/tmp/* \
        "$d"/usr/share/man/* "$d"/usr/share/info/*
    mkdir -p "$d/var/lib/apt/lists/partial"
    # Docker provides these at run time; do not bake in the host's.
    rm -f "$d/etc/resolv.conf" "$d/etc/hostname"
    : >"$d/etc/resolv.conf"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$d/etc/hosts"
    # Device nodes are provided by docker.
    rm -rf "${d:?}"/dev/*
}

# ------------------------------------------------------------- networking ---
probe_network() {
    [ "$network" = auto ] || return 0
    local hostport host port
    hostport=${mirror#*://}; hostport=${hostport%%/*}
    host=${hostport%%:*}
    if [ "$host" != "$hostport" ]; then port=${hostport##*:}; else
        case $mirror in https://*) port=443 ;; *) port=80 ;; esac
    fi
    local mode
    for mode in bridge host; do
        if timeout 30 docker run --rm --network "$mode" --entrypoint /bin/bash "$rootfs_image" \
            -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1; then
            network=$mode
            log "build network: $network (reaches $host:$port)"
            return 0
        fi
    done
    network=host
    log "warning: neither bridge nor host network reached $host:$port; using host"
}

# ------------------------------------------------------------ docker build --
# stage_context NAME -> prints a temp build context dir: images/NAME/* plus
# extra-ca/ holding the CA bundle split into one certificate per file.
stage_context() {
    local name=$1 ctx
    ctx="$tmp_root/ctx-$name"
    mkdir -p "$ctx/extra-ca"
    cp -a "$images_dir/$name/." "$ctx/"
    if [ -n "$ca_bundle" ]; then
        awk -v dir="$ctx/extra-ca" '
            /-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/extra-ca-%04d.crt", dir, n); inside = 1 }
            inside { print > f }
            /-----END CERTIFICATE-----/ { if (inside) close(f); inside = 0 }
            END { if (n == 0) exit 3 }
        ' "$ca_bundle" || die "no PEM certificates found in CA bundle $ca_bundle"
    fi
    # Stable mtimes keep the layer cache independent of when we staged.
    find "$ctx" -exec touch -h -d @0 {} +
    printf '%s\n' "$ctx"
}

build_image() {
    local name=$1 tag=$2 ctx before after
    before=$(image_id "$tag")
    ctx=$(stage_context "$name")
    log "docker build $tag (network $network)"
    # Bridge is the default of both builders (BuildKit rejects the name).
    local net=()
    if [ "$network" != bridge ] && [ "$network" != default ]; then net=(--network "$network"); fi
    if ! docker build ${net[@]+"${net[@]}"} ${no_cache[@]+"${no_cache[@]}"} \
        -t "$tag" "$ctx" >"$tmp_root/build-$name.log" 2>&1; then
        tail -n 40 "$tmp_root/build-$name.log" >&2
        die "docker build $tag failed"
    fi
    after=$(image_id "$tag")
    if [ -n "$before" ] && [ "$before" = "$after" ]; then
        record "$tag" "up to date (cached)"
    else
        record "$tag" "built"
    fi
}

# The agents' image: its build context is the prefix scripts/agents.sh fills (copied as
# is; the Dockerfile stays in images/agents).
build_agents() {
    local dir=${PADDOCK_AGENTS_DIR:-$cache_dir/agents} before after
    PADDOCK_AGENTS_DIR=$dir "$repo/scripts/agents.sh"
    before=$(image_id paddock-agents:latest)
    log "docker build paddock-agents:latest from $dir"
    if ! docker build ${no_cache[@]+"${no_cache[@]}"} -f "$images_dir/agents/Dockerfile" \
        -t paddock-agents:latest "$dir" >"$tmp_root/build-agents.log" 2>&1; then
        tail -n 40 "$tmp_root/build-agents.log" >&2
        die "docker build paddock-agents:latest failed"
    fi
    after=$(image_id paddock-agents:latest)
    if [ -n "$before" ] && [ "$before" = "$after" ]; then
        record paddock-agents:latest "up to date (cached)"
    else
        record paddock-agents:latest "built"
    fi
    docker run --rm --network none --user 1000:1000 paddock-agents:latest \
        /opt/paddock-agents/bin/node -e 'process.exit(0)' || die "paddock-agents: node does not run"
}

verify_locked() {
    local out
    out=$(docker run --rm --network none --user 1000:1000 paddock-locked:latest \
        /bin/sh -c 'python3 -c "print(6*7)"') || die "paddock-locked: python3 check failed"
    [ "$out" = 42 ] || die "paddock-locked: expected 42, got: $out"
    if docker run --rm --network none paddock-locked:latest ls >/dev/null 2>&1; then
        die "paddock-locked: 'ls' unexpectedly exists"
    fi
}

# ------------------------------------------------------------------- main ---
start=$SECONDS
if [ -n "$ca_bundle" ]; then log "CA bundle: $ca_bundle"; else log "CA bundle: none"; fi
if want rootfs; then build_rootfs; fi
if want base || want locked || want web || want agents; then probe_network; fi
if want base; then build_image base paddock-base:latest; fi
if want locked; then build_image locked paddock-locked:latest; verify_locked; fi
if want web; then build_image web paddock-web:latest; fi
if want agents; then build_agents; fi

echo
printf '%-26s %-22s %s\n' IMAGE STATUS SIZE
for tag in "${order[@]}"; do
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    printf '%-26s %-22s %s\n' "$tag" "${status[$tag]}" \
        "$(numfmt --to=iec --suffix=B --format=%.1f "$size" 2>/dev/null || echo "$size bytes")"
done
echo "done in $((SECONDS - start))s"
