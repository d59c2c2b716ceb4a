#!/usr/bin/env bash
# Static proof of terraform/ and the Dockerfile, offline: terraform fmt; init (local provider
# mirror, no backend), validate and `terraform test` (mocked provider) of the root module and of
# every module on its own; checkov; hadolint. A missing tool fails the check; nothing is skipped.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
plugin_dir=${TF_PLUGIN_DIR:-/opt/tf-plugins}
cd "$repo"

fail() { printf 'terraform-check FAILED: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in terraform checkov hadolint python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) || fail "missing tools: ${missing[*]} (checkov and hadolint come from \`make tools\`)"
[[ -d $plugin_dir/registry.terraform.io/hashicorp/aws ]] || fail "no AWS provider mirror in $plugin_dir"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
[[ -f ${TF_CLI_CONFIG_FILE:-$HOME/.terraformrc} ]] || export TF_CLI_CONFIG_FILE=/dev/null

echo "--- terraform fmt -check -recursive"
terraform fmt -check -recursive -diff terraform || fail "run \`terraform fmt -recursive terraform\`"

for dir in terraform terraform/modules/*/; do
  dir=${dir%/}
  echo "--- init and validate $dir"
  terraform -chdir="$dir" init -backend=false -plugin-dir="$plugin_dir" -no-color >/dev/null ||
    fail "terraform init failed in $dir"
  if aliases=$(grep -oE 'configuration_aliases *= *\[[^]]*\]' "$dir/versions.tf"); then
    # `terraform validate` cannot supply the provider aliases a module expects from its caller
    # (hashicorp/terraform#28490), so a copy gets empty configurations for them.
    copy=$(mktemp -d)
    cp -r "$dir"/. "$copy"
    for alias in $(grep -oE 'aws\.[a-z0-9_]+' <<<"$aliases"); do
      printf 'provider "aws" {\n  alias = "%s"\n}\n' "${alias#aws.}" >>"$copy/validate_providers.tf"
    done
    terraform -chdir="$copy" validate -no-color || { rm -rf "$copy"; fail "terraform validate failed in $dir"; }
    rm -rf "$copy"
  else
    terraform -chdir="$dir" validate -no-color || fail "terraform validate failed in $dir"
  fi
  if compgen -G "$dir/tests/*.tftest.hcl" >/dev/null; then
    echo "--- terraform test $dir (mocked AWS provider)"
    terraform -chdir="$dir" test -no-color || fail "terraform test failed in $dir"
  fi
done

echo "--- checkov (failures fail; each skip is inline with its reason)"
# --skip-download: no call to the Prisma Cloud API for guidelines, the scan stays offline.
checkov --directory terraform --framework terraform --skip-download --quiet --compact --output cli ||
  fail "checkov reports failed checks"
echo "skipped checks, each with its reason in the code:"
grep -rhoE 'checkov:skip=[A-Z0-9_]+' terraform --include='*.tf' | sort | uniq -c | sed 's/checkov:skip=//'

echo "--- Inputs/Outputs tables of the READMEs"
python3 terraform/test/docs.py --check || fail "README tables out of date"

echo "--- hadolint Dockerfile"
hadolint Dockerfile || fail "hadolint reports problems in the Dockerfile"
echo "terraform-check passed"
