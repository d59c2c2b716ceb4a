#!/usr/bin/env bash
# Checks scripts/image-tag.sh on a temporary clone of this repository, with this working tree's
# image-tag.sh, .dockerignore and Dockerfile committed on top: the clean tag is the revision; a
# change to any file the image build can see (tracked, untracked, git-ignored, deleted, its mode,
# the Dockerfile) gives a "-dirty-" tag of its own, the same for the same content; a change outside
# the build context does not change the tag; a .dockerignore the script cannot read exactly is
# refused. Then, since no CI job builds the image, it checks that the build context alone (the
# files image-tag.sh hashes) holds the Cargo workspace the Dockerfile builds the server from.
# Offline; a minute or two, most of it `cargo check`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { printf 'test-image-tag FAILED: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok: %s\n' "$*"; }

# clone DIR: a clone of HEAD with the files under test taken from the working tree.
clone() {
  git clone --quiet --no-checkout "$repo" "$1"
  git -C "$1" checkout --quiet --detach "$(git -C "$repo" rev-parse HEAD)"
  cp "$repo/scripts/image-tag.sh" "$1/scripts/image-tag.sh"
  cp "$repo/.dockerignore" "$repo/Dockerfile" "$1/"
  git -C "$1" add scripts/image-tag.sh .dockerignore Dockerfile
  # A fixed author and date, so two clones make the same commit, hence the same revision.
  git -C "$1" diff --cached --quiet ||
    GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z \
      git -C "$1" -c user.name=test-image-tag -c user.email=test-image-tag@localhost \
      commit --quiet --no-verify -m 'the image tag files under test'
}

c=$work/clone
clone "$c"
tag() { "$c/scripts/image-tag.sh"; }
# reset: the clone back to its commit, untracked and ignored files gone.
reset() { git -C "$c" reset --quiet --hard && git -C "$c" clean --quiet -fdx; }
rev=$(git -C "$c" rev-parse HEAD)
rev=${rev:0:12}

echo "--- scripts/image-tag.sh on a clone at $rev"
clean=$(tag)
[[ $clean == "$rev" ]] || fail "clean clone: expected the revision $rev, got '$clean'"
ok "clean tree: $clean"

# Outside the build context: tracked and untracked files the Dockerfile cannot see.
echo "more" >>"$c/README.md"
echo "new" >"$c/NOTES.md"
echo "// new" >"$c/server/tests/extra.rs"
echo "# new" >"$c/terraform/extra.tf"
[[ $(tag) == "$rev" ]] || fail "a change outside the build context changed the tag to $(tag)"
ok "README.md, server/tests/, terraform/ changed or added: still $rev"
reset

declare -A seen=()
# dirty WHAT: the tag now is the revision's dirty form, new, and stable.
dirty() {
  local t
  t=$(tag)
  [[ $t =~ ^$rev-dirty-[0-9a-f]{16}$ ]] || fail "$1: expected $rev-dirty-<16 hex digits>, got '$t'"
  [[ -z ${seen[$t]:-} ]] || fail "$1: same tag $t as '${seen[$t]}'"
  [[ $(tag) == "$t" ]] || fail "$1: a second run gave another tag"
  seen[$t]=$1
  ok "$1: $t"
  reset
  [[ $(tag) == "$rev" ]] || fail "after undoing '$1' the tag is $(tag), not $rev"
}

echo "// changed" >>"$c/server/src/main.rs"
dirty "tracked server/src/main.rs modified"
echo "pub fn extra() {}" >"$c/server/src/extra.rs"
dirty "untracked server/src/extra.rs"
echo "*.local" >>"$c/.git/info/exclude"
echo "ignored by git, sent by Docker" >"$c/server/src/notes.local"
dirty "git-ignored server/src/notes.local"
rm "$c/smoke/src/checks.rs"
dirty "tracked smoke/src/checks.rs deleted"
chmod +x "$c/Cargo.toml"
dirty "Cargo.toml made executable"
echo "LABEL test=1" >>"$c/Dockerfile"
dirty "Dockerfile changed"

# The same content gives the same tag, whichever clone and whenever.
echo "// changed" >>"$c/server/src/main.rs"
first=$(tag)
clone "$work/other"
echo "// changed" >>"$work/other/server/src/main.rs"
[[ $("$work/other/scripts/image-tag.sh") == "$first" ]] || fail "the same change in another clone gave another tag"
ok "the same change in another clone: the same tag"
reset

# A .dockerignore outside the form the script reads exactly is refused, not misread.
for bad in '**/*.rs' '!server/*.rs' '!../secrets' '!/server/src'; do
  reset
  printf '%s\n' "$bad" >>"$c/.dockerignore"
  if out=$(tag 2>&1); then fail ".dockerignore line '$bad' was accepted (tag $out)"; fi
  [[ $out == *".dockerignore:"* ]] || fail ".dockerignore line '$bad': unexpected message: $out"
done
reset
ok "wildcards, parent paths and absolute paths in .dockerignore refused"

echo "--- the build context alone holds the workspace the Dockerfile builds"
files=$("$c/scripts/image-tag.sh" --files)
grep -qx 'server/src/main.rs' <<<"$files" || fail "server/src/main.rs is not in the build context"
grep -qx 'server/src/demo/index.html' <<<"$files" || fail "the demo page (include_str!) is not in the build context"
! grep -qE '^(README\.md|terraform/|scripts/|target/|\.git/|server/tests/)' <<<"$files" ||
  fail "the build context holds what the image build does not need: $(grep -E '^(README\.md|terraform/|scripts/|target/|\.git/|server/tests/)' <<<"$files" | head -3)"
# At a fixed path in the repository's target directory, which cargo shares: the dependencies are
# not checked again on every run, and the server's own check results are replaced, not piled up.
ctx=$repo/target/image-context
rm -rf "$ctx"
mkdir -p "$ctx"
(cd "$c" && while IFS= read -r f; do cp --parents -- "$f" "$ctx/"; done <<<"$files")
# The Dockerfile's cargo command, as `check`: on the host's CPU, without linking.
(cd "$ctx" && CARGO_TARGET_DIR="$repo/target" cargo check --quiet --locked -p server --bin websocket-server) ||
  fail "the build context alone does not build the server (is a new workspace member or a file the server reads missing from .dockerignore?)"
ok "$(wc -l <<<"$files") files; cargo check --locked -p server --bin websocket-server passes in them alone"

echo "test-image-tag passed"
