#!/usr/bin/env bash
# Download a Debian kernel build and unpack its image for `mmtriage lab`, with a private apt
# configuration (this machine's apt sources are not touched).
#   scripts/get-kernel.sh 6.16.3+deb13 [7.3.4+deb13 ...]   -> .lab/kernels/vmlinuz-<ver>-amd64
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${LAB_KERNELS:-.lab/kernels}
apt_dir=$(pwd)/.lab/apt
mkdir -p "$dest" "$apt_dir"/{lists/partial,cache/archives/partial,etc} 
cat > "$apt_dir/sources.list" <<SRC
deb http://deb.debian.org/debian trixie-backports main
deb http://deb.debian.org/debian sid main
SRC
cat > "$apt_dir/apt.conf" <<CONF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "$apt_dir/etc";
Dir::State::Lists "$apt_dir/lists";
Dir::Cache "$apt_dir/cache";
Dir::State::status "$apt_dir/status";
Acquire::AllowInsecureRepositories "true";
APT::Get::AllowUnauthenticated "true";
CONF
touch "$apt_dir/status"
export APT_CONFIG="$apt_dir/apt.conf"
[ -n "$(ls -A "$apt_dir/lists" 2>/dev/null | grep -v partial)" ] || apt-get update -qq 2>/dev/null
for ver in "$@"; do
  out="$dest/vmlinuz-$ver-amd64"
  [ -f "$out" ] && { echo "$out"; continue; }
  tmp=$(mktemp -d)
  # 6.19 and later ship the image in linux-binary-*, earlier ones in linux-image-*
  (cd "$tmp" && (apt-get download -qq "linux-binary-$ver-amd64" 2>/dev/null ||
                  apt-get download -qq "linux-image-$ver-amd64"))
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  img=$(find "$tmp/x" -name 'vmlinuz*' -type f | head -n 1)
  [ -n "$img" ] || { echo "no kernel image in the package for $ver" >&2; exit 1; }
  cp "$img" "$out"
  rm -rf "$tmp"
  echo "$out"
done
