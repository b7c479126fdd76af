#!/usr/bin/env bash
# What the release workflow checks before it builds anything, so that a tag cannot publish
# something the README does not describe:
# - the tag is v<the version in Cargo.toml>;
# - the repository publishing is the one Cargo.toml names (the README's download commands and
#   the Kubernetes manifests point at its GitHub Releases and its ghcr.io image);
# - CHANGELOG.md has a section for the version (its notes go into the release).
# Prints the version.
#
#   scripts/release-preflight.sh v0.1.0 owner/name
#
# CHANGELOG names another changelog file (the checks' own tests use one).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
  echo "usage: scripts/release-preflight.sh TAG OWNER/NAME" >&2
  exit 64
fi
tag=$1 repository=$2
changelog=${CHANGELOG:-CHANGELOG.md}
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
home=$(awk -F'"' '/^repository = / {print $2; exit}' Cargo.toml)
problems=()
[ "$tag" = "v$version" ] ||
  problems+=("the tag is $tag, Cargo.toml's version is $version: tag v$version, or bump the version")
shopt -s nocasematch
[[ "$home" == "https://github.com/$repository" ]] ||
  problems+=("publishing from $repository, but Cargo.toml's repository is $home (the README and deploy/ point there): change it, and the image names in deploy/, first")
shopt -u nocasematch
grep -q "^## \[$version\]" "$changelog" ||
  problems+=("$changelog has no '## [$version]' section: move the Unreleased notes under it")
if [ ${#problems[@]} -gt 0 ]; then
  printf 'release preflight: %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "$version"
