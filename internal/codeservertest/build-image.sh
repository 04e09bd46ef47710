#!/bin/sh
# build-image.sh builds thon/sandbox-test:latest, the image thon's tests run
# sandboxes from, without pulling anything: a root filesystem made of Debian's
# busybox-static and the test server (a stand-in for code-server, see
# main.go), docker-imported.
#
# The image carries the sha256 of its root filesystem archive in the label
# thon.content-hash and the tag thon/sandbox-test:<first 12 hex digits>; when
# the image already has the hash of what would be imported, nothing is
# imported.
#
# Usage: internal/codeservertest/build-image.sh [image]   (default thon/sandbox-test:latest)
set -eu

IMAGE=${1:-thon/sandbox-test:latest}
REPO=${IMAGE%:*}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() {
	echo "build-image: $*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 || die "go is not on PATH"
command -v docker >/dev/null 2>&1 || die "docker CLI is not on PATH (apt-get install docker.io)"
command -v tar >/dev/null 2>&1 || die "tar is not on PATH"
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
	die "busybox-static is not installed: apt-get install busybox-static"
BUSYBOX=$(dpkg-query -L busybox-static | grep '/busybox$' | head -n 1)
[ -n "$BUSYBOX" ] && [ -x "$BUSYBOX" ] || die "busybox-static is installed but its busybox binary was not found"
docker info >/dev/null 2>&1 || die "docker engine is not reachable (is dockerd running?)"

umask 022
WORK=$(mktemp -d "${TMPDIR:-/tmp}/thon-sandbox-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
FS=$WORK/rootfs

mkdir -p "$FS/bin" "$FS/sbin" "$FS/usr/bin" "$FS/usr/sbin" "$FS/etc" "$FS/tmp" \
	"$FS/home/vscode/.config" "$FS/workspace" "$FS/root" "$FS/proc" "$FS/sys" "$FS/dev"
chmod 1777 "$FS/tmp"
chmod 0700 "$FS/root"

# The server, static so it needs no libc in the image.
(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags='-s -w' \
	-o "$FS/usr/bin/code-server" ./internal/codeservertest) || die "building the test server failed"

# busybox and its applets as symlinks at their usual places.
cp "$BUSYBOX" "$FS/bin/busybox"
"$FS/bin/busybox" --list-full | while read -r applet; do
	[ -e "$FS/$applet" ] || [ -L "$FS/$applet" ] || ln -s /bin/busybox "$FS/$applet"
done
[ -x "$FS/bin/sh" ] || die "busybox did not provide /bin/sh"

cat >"$FS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
vscode:x:1001:1001:vscode:/home/vscode:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$FS/etc/group" <<'EOF'
root:x:0:
vscode:x:1001:
nogroup:x:65534:
EOF
printf 'hosts: files dns\n' >"$FS/etc/nsswitch.conf"

# A deterministic archive: sorted names, fixed times, explicit owners. The
# home and workspace directories are appended owned by vscode (1001:1001), so
# neither root nor chown is needed.
ARCHIVE=$WORK/rootfs.tar
TAR_OPTS="--format=gnu --sort=name --mtime=@0 --numeric-owner"
# shellcheck disable=SC2086
tar $TAR_OPTS --owner=0 --group=0 -C "$FS" \
	--exclude=./home/vscode --exclude=./workspace -cf "$ARCHIVE" . ||
	die "creating the root filesystem archive failed"
# shellcheck disable=SC2086
tar $TAR_OPTS --owner=1001 --group=1001 -C "$FS" -rf "$ARCHIVE" ./home/vscode ./workspace ||
	die "appending the vscode directories failed"

HASH=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
SHORT=$(printf '%s' "$HASH" | cut -c1-12)

CURRENT=$(docker image inspect --format '{{index .Config.Labels "thon.content-hash"}}' "$IMAGE" 2>/dev/null || true)
if [ "$CURRENT" = "$HASH" ]; then
	echo "build-image: $IMAGE is up to date (content hash $SHORT), not rebuilt"
	exit 0
fi

docker import \
	--change 'USER vscode' \
	--change 'WORKDIR /workspace' \
	--change 'EXPOSE 8443' \
	--change 'ENV HOME=/home/vscode' \
	--change "LABEL thon.content-hash=$HASH" \
	--change 'CMD ["code-server","--bind-addr","0.0.0.0:8443","--auth","none","--disable-telemetry","/workspace"]' \
	- "$IMAGE" <"$ARCHIVE" >/dev/null || die "docker import failed"
docker tag "$IMAGE" "$REPO:$SHORT" || die "tagging $REPO:$SHORT failed"
echo "build-image: built $IMAGE (content hash $SHORT)"
