#!/usr/bin/env bash
# Builds the seed_rl images with podman where public container registries are
# unreachable: a Debian bookworm base made with debootstrap from Debian's package
# mirror, imported with `podman import`, then docker/Dockerfile on top of it.
#   docker/build_local.sh            # the actor image (seed-rl-actor:latest)
#   docker/build_local.sh learner    # also the learner image (pulls a multi-GB CUDA torch)
#   docker/build_local.sh actor-football learner-football   # the images for Football jobs
# Needs root, debootstrap and podman (apt-get install debootstrap podman).
# SEED_RL_CA_FILE: a CA bundle to trust for PyPI inside the build (for a TLS-intercepting
# proxy); default: the host's bundle when PIP_CERT names one. It is mounted, not copied.
# SEED_RL_WHEELS: a folder of wheels the learner image prefers, e.g. one holding a CPU
# build of torch==2.13.0, to build the learner image without the CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(actor)
for target in "$@"; do [ "$target" = actor ] || targets+=("$target"); done
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=localhost/seed-rl-debian:bookworm
podman=(podman --storage-driver=vfs)

if ! "${podman[@]}" image exists "$base"; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap: bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "${podman[@]}" import - "$base"
fi

build_args=(--build-arg "BASE=$base")
ca=${SEED_RL_CA_FILE:-${PIP_CERT:-}}
if [ -n "$ca" ]; then
  build_args+=(--volume "$ca:/run/seed-rl-ca.crt:ro" --build-arg PIP_CERT=/run/seed-rl-ca.crt)
fi
if [ -n "${SEED_RL_WHEELS:-}" ]; then
  build_args+=(--volume "$SEED_RL_WHEELS:/run/seed-rl-wheels:ro" --build-arg PIP_FIND_LINKS=/run/seed-rl-wheels)
fi
for target in "${targets[@]}"; do
  case "$target" in
    actor|learner|actor-football|learner-football) ;;
    *) echo "error: unknown image '$target'; choose actor, learner, actor-football or learner-football" >&2
       exit 2 ;;
  esac
  "${podman[@]}" build --isolation=chroot --network=host "${build_args[@]}" --target "$target" \
    --tag "localhost/seed-rl-$target:latest" --file docker/Dockerfile .
done
