#!/usr/bin/env bash
# Fills krew/coredog.yaml.tmpl for a release and prints the krew plugin manifest.
#
#   krew/render.sh VERSION DIST_DIR > coredog.yaml
#
# VERSION is the release tag (v0.1.0). DIST_DIR holds the release archives
# kubectl-coredog_<os>_<arch>.tar.gz for linux and darwin, amd64 and arm64, as the release
# workflow makes them; each manifest entry gets its archive's sha256.
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 VERSION DIST_DIR" >&2
  exit 2
fi
version=$1
dist=$2
template="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/coredog.yaml.tmpl"

if ! [[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "$0: VERSION must be a release tag such as v0.1.0, not '$version'" >&2
  exit 2
fi

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

substitutions=(-e "s/{{VERSION}}/$version/g")
for os in linux darwin; do
  for arch in amd64 arm64; do
    archive="$dist/kubectl-coredog_${os}_${arch}.tar.gz"
    if [ ! -f "$archive" ]; then
      echo "$0: missing $archive" >&2
      exit 1
    fi
    sum=$(sha256_of "$archive")
    if ! [[ $sum =~ ^[0-9a-f]{64}$ ]]; then
      echo "$0: cannot hash $archive" >&2
      exit 1
    fi
    placeholder="SHA256_$(echo "${os}_${arch}" | tr '[:lower:]' '[:upper:]')"
    substitutions+=(-e "s/{{$placeholder}}/$sum/g")
  done
done

rendered=$(sed "${substitutions[@]}" "$template")
if grep -q '{{' <<<"$rendered"; then
  echo "$0: placeholders left unfilled:" >&2
  grep '{{' <<<"$rendered" >&2
  exit 1
fi
printf '%s\n' "$rendered"
