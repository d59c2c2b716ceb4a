#!/usr/bin/env bash
# Prints the tag for the websocket-server image built from this working tree (`make image`).
#
# An image is made from the Dockerfile and the build context; .dockerignore narrows the context to
# an allowlist of paths (`*`, then `!path` lines). This script hashes exactly that: every file the
# context holds, tracked, untracked and git-ignored alike (Docker sends them all), plus the
# Dockerfile and .dockerignore.
#   - all of it as in HEAD: the revision, 12 hex digits (3f2a9c1d0b7e);
#   - anything else: the revision, "-dirty-" and 16 hex digits of that hash
#     (3f2a9c1d0b7e-dirty-8c1e04b2a9d3f6e7).
# ECR tags are immutable and `make image` skips a tag ECR already has, so one tag must never name
# two different images: were a file the build copies left out of the hash, two different builds
# would share a tag and the second would silently deploy the first's image. A change outside the
# context (README.md, terraform/) does not change the image, and leaves the tag alone.
#
# A file is hashed by its git blob id (its bytes, unfiltered) and git mode (regular, executable or
# symlink), so a clean tree and HEAD give the same records. Empty directories are not hashed.
#
#   scripts/image-tag.sh           the tag
#   scripts/image-tag.sh --files   the hashed paths, one per line (scripts/test-image-tag.sh
#                                  builds the server from them alone)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fail() { printf 'image-tag.sh: %s\n' "$*" >&2; exit 1; }

# Listings go through files, not process substitution: `wait $!` on a process substitution can
# report a status bash has already discarded (127), which made a good listing look failed.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

case ${1:-} in
  "") mode=tag ;;
  --files) mode=files ;;
  *) fail "unknown argument '$1' (none prints the tag; --files the hashed paths)" ;;
esac

# --- the allowlist in .dockerignore: `*`, then literal `!path` lines
[[ -f .dockerignore && -f Dockerfile ]] || fail "no Dockerfile or .dockerignore in $repo"
paths=()
seen_all=false
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
  lineno=$((lineno + 1))
  [[ $line == \#* ]] && continue # Docker: a comment starts in column 1
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -n $line ]] || continue
  if ! $seen_all; then
    [[ $line == '*' ]] || fail ".dockerignore:$lineno: the first pattern must be '*' (an allowlist), not '$line'"
    seen_all=true
    continue
  fi
  # A plain relative path: no wildcards, no leading / or -, no . or .. segments.
  [[ $line =~ ^!([A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*)$ ]] &&
    [[ /${BASH_REMATCH[1]}/ != */./* && /${BASH_REMATCH[1]}/ != */../* ]] ||
    fail ".dockerignore:$lineno: '$line' is not of the form '!path' with a literal path;" \
      "this script hashes only an allowlist of literal paths, so it cannot tell what the context holds"
  paths+=("${BASH_REMATCH[1]}")
done <.dockerignore
((${#paths[@]})) || fail ".dockerignore allows nothing into the build context (it must be '*', then '!path' lines)"
paths+=(Dockerfile .dockerignore)

git rev-parse --is-inside-work-tree >/dev/null 2>&1 || fail "$repo is not a git work tree: the tag names a revision"
rev=$(git rev-parse --verify --quiet 'HEAD^{commit}') || fail "no commit in $repo yet: the tag names a revision"
filemode=$(git config --type=bool core.fileMode 2>/dev/null || echo true)

# Records, one per file: "<git mode> <blob id> <path>", NUL-terminated, sorted by the C locale.
# Where git ignores the executable bit (core.fileMode false), so does the hash.
normalize_mode() { if [[ $filemode == false && $1 == 100755 ]]; then echo 100644; else echo "$1"; fi; }

# The working tree, as Docker sends it: everything under each allowed path, ignored files too.
worktree_records() {
  local existing=() entries=() files=() modes=() ids=() path i
  for path in "${paths[@]}"; do
    [[ -e $path || -L $path ]] && existing+=("./$path")
  done
  # Triples of type (f or l), permission bits in octal, path.
  find "${existing[@]}" \( -type f -o -type l \) -printf '%y\0%m\0%p\0' >"$scratch/context" ||
    fail "find could not list the build context"
  mapfile -d '' entries <"$scratch/context"
  for ((i = 0; i < ${#entries[@]}; i += 3)); do
    path=${entries[i + 2]#./}
    [[ $path != *$'\n'* ]] || fail "a path with a newline in the build context: '$path'"
    if [[ ${entries[i]} == l ]]; then
      printf '120000 %s %s\0' "$(printf '%s' "$(readlink -- "$path")" | git hash-object --stdin)" "$path"
    else
      files+=("$path")
      if ((8#${entries[i + 1]} & 8#100)); then modes+=("$(normalize_mode 100755)"); else modes+=(100644); fi
    fi
  done
  ((${#files[@]})) || return 0
  printf '%s\n' "${files[@]}" | git hash-object --no-filters --stdin-paths >"$scratch/ids" ||
    fail "git hash-object failed"
  mapfile -t ids <"$scratch/ids"
  ((${#ids[@]} == ${#files[@]})) || fail "git hash-object gave ${#ids[@]} ids for ${#files[@]} files"
  for i in "${!files[@]}"; do
    printf '%s %s %s\0' "${modes[i]}" "${ids[i]}" "${files[i]}"
  done
}

# HEAD, for the same paths (ls-tree takes and prints them relative to the current directory).
head_records() {
  local entries=() entry meta path gitmode type id
  git --literal-pathspecs ls-tree -r -z "$rev" -- "${paths[@]}" >"$scratch/tree" || fail "git ls-tree failed"
  mapfile -d '' entries <"$scratch/tree"
  for entry in "${entries[@]}"; do
    meta=${entry%%$'\t'*} path=${entry#*$'\t'}
    read -r gitmode type id <<<"$meta"
    [[ $type == blob ]] || fail "$path is a $type in HEAD; only files can be hashed"
    printf '%s %s %s\0' "$(normalize_mode "$gitmode")" "$id" "$path"
  done
}

digest() { LC_ALL=C sort -z | sha256sum | cut -c1-64; }

if [[ $mode == files ]]; then
  worktree_records | while IFS= read -r -d '' record; do
    printf '%s\n' "${record#* * }"
  done | LC_ALL=C sort
  exit 0
fi

now=$(worktree_records | digest)
committed=$(head_records | digest)
if [[ $now == "$committed" ]]; then
  printf '%s\n' "${rev:0:12}"
else
  printf '%s-dirty-%s\n' "${rev:0:12}" "${now:0:16}"
fi
