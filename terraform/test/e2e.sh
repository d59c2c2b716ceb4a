#!/usr/bin/env bash
# End-to-end proof of terraform/ against an AWS emulator, offline, talking only to 127.0.0.1:
#  1. starts moto_server, `cargo lambda watch` serving the real custom-header-fn, and
#     lambda_proxy.py (the provider's Lambda endpoint: invokes to cargo lambda, the rest to moto);
#  2. copies terraform/ to a temporary directory and adds e2e_override.tf, which points the AWS
#     provider at them with dummy credentials (the production files are not changed);
#  3. `terraform apply`, then checks the emulator through boto3 (emulator.py deployed);
#  4. `terraform plan -detailed-exitcode` must find nothing to change, and neither it nor
#     `terraform plan -destroy`, `terraform show`, the outputs or the apply's log may contain any
#     secret value;
#  5. rotates the secret with scripts/rotate-secret.sh (the script behind `make rotate-secret`),
#     checking after each step that the load balancer accepts what CloudFront sends;
#  6. `terraform destroy`, then nothing may be left in the emulator that was not there before.
# A missing tool fails the test; nothing is skipped. Everything started is stopped on exit.
set -euo pipefail

test_name=e2e
source "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"
budget_seconds=600

# The AWS CLI that `make tools` installs in a venv of its own (its botocore cannot share moto's).
if [[ -x $repo/.venv/awscli/cli/aws ]]; then PATH=$repo/.venv/awscli/cli:$PATH; fi
require_tools terraform cargo cargo-lambda python3 aws

start_moto
watch_port=$(free_port)
proxy_port=$(free_port)

step "custom-header-fn: build, then cargo lambda watch on 127.0.0.1:$watch_port"
# Built first so that the first invocation does not wait for a compilation.
cd "$repo"
cargo build --quiet -p custom-header-fn --bin bootstrap || fail "custom-header-fn does not build"
# The function finds the emulator through the standard endpoint variable.
start watch.log env AWS_ENDPOINT_URL="$moto" cargo lambda watch --quiet --ignore-changes \
  --invoke-address 127.0.0.1 --invoke-port "$watch_port" \
  --package custom-header-fn --bin bootstrap \
  --env-var "AWS_ENDPOINT_URL=$moto,AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing,AWS_REGION=us-east-1"
wait_for_port "$watch_port" "cargo lambda watch" 120

step "lambda_proxy.py on 127.0.0.1:$proxy_port"
start proxy.log python3 "$here/lambda_proxy.py" --port "$proxy_port" --moto-port "$moto_port" --watch-port "$watch_port" --binary bootstrap
wait_for_port "$proxy_port" lambda_proxy.py

step "copy of terraform/ with e2e_override.tf"
copy_terraform "$work/tf" "http://127.0.0.1:$proxy_port"
placeholder_lambda_zip "$work/bootstrap.zip"
emulator() { AWS_ENDPOINT_URL=$moto python3 "$here/emulator.py" "$@"; }
# The default configuration (the Redis backplane included): what a first `make apply` deploys.
vars=(-var image_tag=e2e -var "lambda_zip_path=$work/bootstrap.zip")
tf init -backend=false -plugin-dir="$plugin_dir" >/dev/null
# The AWS CLI of scripts/*.sh too: the Lambda through the proxy, everything else to moto.
export AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$proxy_port

step "the ECS service-linked role, as \`make apply\` creates it first (twice: existing is success)"
AWS_ENDPOINT_URL=$moto "$repo/scripts/ensure-service-linked-role.sh" || fail "ensure-service-linked-role.sh failed on a fresh account"
AWS_ENDPOINT_URL=$moto "$repo/scripts/ensure-service-linked-role.sh" || fail "ensure-service-linked-role.sh failed when the role exists"
emulator inventory >"$work/before.json"

step "terraform apply"
tf apply -auto-approve -no-color "${vars[@]}" >"$work/apply.log" 2>&1 || fail "terraform apply failed (see apply.log below)"
grep -E '^Apply complete' "$work/apply.log"
tf output -json >"$work/outputs.json"

step "the deployment in the emulator"
emulator deployed "$work/outputs.json"

step "terraform plan -detailed-exitcode right after the apply"
set +e
tf plan -detailed-exitcode -no-color "${vars[@]}" >"$work/plan.log" 2>&1
plan_status=$?
set -e
case $plan_status in
  0) echo "  ok: no changes" ;;
  2) cat "$work/plan.log" >&2; fail "the plan right after apply is not empty" ;;
  *) fail "terraform plan failed (exit $plan_status, see plan.log below)" ;;
esac

# Every secret value the deployment has held (read from the emulator while it exists), and a
# check that none appears in the given files.
remember_secrets() { emulator secrets "$work/outputs.json" >>"$work/secrets.txt"; }
no_secret_in() {
  local value file
  [[ -s $work/secrets.txt ]] || fail "no secret values were collected to look for"
  while read -r value; do
    for file in "$@"; do
      ! grep -qF -- "$value" "$file" || fail "a secret value appears in clear in $(basename "$file")"
    done
  done <"$work/secrets.txt"
  echo "  ok: none of $(sort -u "$work/secrets.txt" | wc -l) secret values in $(for file in "$@"; do basename "$file"; done | paste -sd, -)"
}

step "no secret in the plans, the state as shown, the outputs or the logs"
tf plan -destroy -no-color "${vars[@]}" >"$work/plan-destroy.log" 2>&1 || fail "terraform plan -destroy failed (see plan-destroy.log below)"
tf show -no-color >"$work/show.log" 2>&1 || fail "terraform show failed"
tf output -no-color >"$work/outputs.txt" 2>&1
remember_secrets
no_secret_in "$work/apply.log" "$work/plan.log" "$work/plan-destroy.log" "$work/show.log" "$work/outputs.txt" "$work/outputs.json"

step "rotation of the secret header in two phases (scripts/rotate-secret.sh)"
old_secret=$(emulator secret "$work/outputs.json")
# Between phases the emulator answers what a client would find out: whether the load balancer
# accepts the value CloudFront sends.
rotate() {
  ROTATION_CHECK="python3 $here/emulator.py consistent $work/outputs.json" \
    ROTATION_WAIT="python3 $here/emulator.py wait-deployed" \
    TF_CLI_ARGS_plan="-no-color" TF_CLI_ARGS_apply="-no-color" AWS_ENDPOINT_URL=$moto \
    timeout --kill-after=10 600 "$repo/scripts/rotate-secret.sh" "$work/tf" "$@"
}
# A change waiting for an apply (here a new Lambda package) must not ride along with the rotation's
# targeted apply: the script refuses, and the service still accepts what CloudFront sends.
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").writestr("bootstrap", "#!/bin/sh\n# another placeholder\n")' "$work/other.zip"
if rotate "${vars[@]}" -var "lambda_zip_path=$work/other.zip" >"$work/rotate-refused.log" 2>&1; then
  cat "$work/rotate-refused.log"; fail "the rotation went ahead although the plan would also change the function"
fi
grep -q "would also change module.origin_secret.aws_lambda_function.this" "$work/rotate-refused.log" ||
  { cat "$work/rotate-refused.log"; fail "the refused rotation does not name the pending change"; }
echo "  ok: a rotation whose plan would also change the function is refused before any change, naming it"
emulator consistent "$work/outputs.json"
rotate "${vars[@]}" >"$work/rotate.log" 2>&1 || fail "the rotation failed (see rotate.log below)"
cat "$work/rotate.log"
emulator rotated "$work/outputs.json" "$old_secret"
remember_secrets
tf plan -destroy -no-color "${vars[@]}" >"$work/plan-destroy-rotated.log" 2>&1 || fail "terraform plan -destroy after the rotation failed"
no_secret_in "$work/rotate-refused.log" "$work/rotate.log" "$work/plan-destroy-rotated.log"

step "terraform destroy"
tf destroy -auto-approve -no-color "${vars[@]}" >"$work/destroy.log" 2>&1 || fail "terraform destroy failed (see destroy.log below)"
no_secret_in "$work/destroy.log"
grep -E '^Destroy complete' "$work/destroy.log"
emulator destroyed "$work/before.json"
grep -q 'lambda_proxy: POST .*-> cargo lambda watch: 200' "$work/proxy.log" || fail "no invocation reached cargo lambda watch"
echo "  ok: $(grep -c -- '-> cargo lambda watch: 200' "$work/proxy.log") invocations ran in cargo lambda watch (create, the three rotation phases, delete)"

((SECONDS <= budget_seconds)) || fail "took ${SECONDS}s, over the ${budget_seconds}s budget"
step "e2e passed in ${SECONDS}s"
