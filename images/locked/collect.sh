#!/bin/bash
# Runs in the builder stage of images/locked/Dockerfile: assembles the complete
# root filesystem of paddock-locked under OUT (default /out).
set -euo pipefail

out=${1:-/out}
rm -rf "$out"
mkdir -p "$out"/usr/bin "$out"/usr/lib "$out"/usr/local/bin "$out"/etc \
    "$out"/tmp "$out"/workspace "$out"/home/paddock

# Debian bookworm is merged-/usr: keep the same top-level symlinks so the
# interpreter paths recorded in ELF headers (/lib64/ld-linux-*.so.*) resolve.
for d in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$out/$d"; fi
done

# copy PATH into $out at its canonical directory, following symlink chains.
copy() {
    local p=$1 dir q t
    while :; do
        dir=$(readlink -f "$(dirname "$p")")
        q="$dir/$(basename "$p")"
        mkdir -p "$out$dir"
        if [ ! -e "$out$q" ] && [ ! -L "$out$q" ]; then cp -a "$q" "$out$dir/"; fi
        [ -L "$q" ] || break
        t=$(readlink "$q")
        case $t in /*) p=$t ;; *) p=$dir/$t ;; esac
    done
}

# /bin/sh = dash (for `command` execs).
copy /usr/bin/dash
ln -s dash "$out/usr/bin/sh"

# python3 -> python3.11 and the whole standard library.
py=$(readlink -f /usr/bin/python3)
pyver=$(basename "$py")               # python3.11
copy /usr/bin/python3
cp -a "/usr/lib/$pyver" "$out/usr/lib/"
mkdir -p "$out/usr/lib/python3/dist-packages"
# Debian's sitecustomize.py is a symlink into /etc/pythonX.Y.
if [ -d "/etc/$pyver" ]; then cp -a "/etc/$pyver" "$out/etc/"; fi
rm -rf "$out/usr/lib/$pyver/ensurepip" "$out/usr/lib/$pyver/idlelib" \
    "$out/usr/lib/$pyver/lib2to3/tests"

# Shared libraries needed by dash, python and every extension module (ldd).
{
    ldd /usr/bin/dash || true
    ldd "$py" || true
    find "$out/usr/lib/$pyver" -name '*.so' -exec ldd {} \; || true
} | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do copy "$lib"; done
# glibc dlopen()s libgcc_s for pthread_exit/cancellation unwinding.
gcc_s=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" { print $NF; exit }')
if [ -n "$gcc_s" ]; then copy "$gcc_s"; fi

# Users: root and paddock (1000:1000).
cat > "$out/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
paddock:x:1000:1000:paddock:/home/paddock:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$out/etc/group" <<'GR'
root:x:0:
paddock:x:1000:
nogroup:x:65534:
GR
chmod 0644 "$out/etc/passwd" "$out/etc/group"
chmod 1777 "$out/tmp"
chown 1000:1000 "$out/workspace" "$out/home/paddock"
chmod 0755 "$out/workspace" "$out/home/paddock"

# Sanity check inside the builder: the assembled tree runs on its own.
chroot "$out" /bin/sh -c 'python3 -c "import json, csv, sqlite3, ssl, decimal, zlib, bz2, lzma, ctypes; print(6*7)"' >/dev/null
echo "paddock-locked rootfs: $(du -sh "$out" | cut -f1)"
