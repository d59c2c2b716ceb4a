#!/usr/bin/env bash
# Rotates the secret header between CloudFront and the load balancer in two phases, so that no
# request is refused at any moment:
#   1. prepare: the function draws a new value into the secret as "pending"; an apply of the load
#      balancer's rule makes it accept the pending value beside the current one;
#   2. promote: the function puts the pending value on the CloudFront origin (the old one becomes
#      "previous", still accepted), and the script waits until CloudFront has deployed it to every
#      edge;
#   3. retire: the function drops the previous value (it refuses while CloudFront is still
#      deploying, or if the origin does not send the current value), and an apply of the rule stops
#      accepting it. A retired value is never drawn or accepted again.
# Each apply is planned first and refused if the plan would change anything but that rule (a
# change waiting for `make apply` is never slipped in); the plan is shown, secrets masked.
# The service is checked after each step; the first failure stops the rotation where it is, in a
# state that still accepts whatever CloudFront sends, and running the script again resumes it
# (every phase is idempotent).
#
#   scripts/rotate-secret.sh TERRAFORM_DIR [terraform apply arguments: -var ...]
#
# ROTATION_CHECK  command run after each step (default: `make smoke`)
# ROTATION_WAIT   command run after promote, with the distribution id as its argument (default:
#                 `aws cloudfront wait distribution-deployed --id`)
set -euo pipefail

tf_dir=${1:?usage: rotate-secret.sh TERRAFORM_DIR [terraform apply arguments]}
shift
check_command=${ROTATION_CHECK:-make smoke}
wait_command=${ROTATION_WAIT:-aws cloudfront wait distribution-deployed --id}

step() { printf -- '--- %s\n' "$*"; }
fail() { printf 'rotate-secret: %s\n' "$*" >&2; exit 1; }

rotation=$(terraform -chdir="$tf_dir" output -json origin_secret_rotation 2>/dev/null) ||
  fail "no origin_secret_rotation output in $tf_dir: deploy first (\`make apply\`)"
function_name=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["function_name"])' <<<"$rotation")
distribution_id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["input"]["DistributionId"])' <<<"$rotation")

# The AWS CLI v2 reads --payload as base64 unless told otherwise; v1 takes it as it is.
binary_format=()
[[ $(aws --version 2>&1) == aws-cli/1.* ]] || binary_format=(--cli-binary-format raw-in-base64-out)

# Runs one phase of the function and prints its answer (which never holds a value).
invoke() {
  local phase=$1 payload answer metadata
  payload=$(python3 -c 'import json, sys; r = json.load(sys.stdin); print(json.dumps({**r["input"], "Rotate": sys.argv[1]}))' "$phase" <<<"$rotation")
  answer=$(mktemp)
  # --output json whatever the user's default, or FunctionError could not be read.
  metadata=$(aws lambda invoke --output json --function-name "$function_name" ${binary_format[@]+"${binary_format[@]}"} --payload "$payload" "$answer") ||
    { rm -f "$answer"; fail "invoking $function_name ($phase) failed"; }
  # Exit 0: the function failed; 1: it succeeded; anything else (unreadable metadata) is a failure.
  local verdict=0
  python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1]).get("FunctionError") else 1)' "$metadata" || verdict=$?
  if ((verdict != 1)); then
    local message
    message=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("errorMessage", "(no message)"))' "$answer" 2>/dev/null ||
      echo "(the invocation's answer could not be read)")
    rm -f "$answer"
    fail "the $phase phase failed: $message"
  fi
  echo "  $phase: $(cat "$answer")"
  rm -f "$answer"
}

# Passes the secret document's values on to the load balancer's rule, and nothing else: a targeted
# plan also covers what the rule depends on, so it is refused if anything but the rule would change.
rule=module.alb.aws_lb_listener_rule.forward_with_secret
# The plan file and its JSON hold the values in clear: only this script reads them, and they go
# when it ends, however it ends.
plan=$(mktemp -d)
chmod 700 "$plan"
trap 'rm -rf "$plan"' EXIT
# Plans the rule's change into $plan and prints "none", "update", or the other addresses the plan
# would change.
plan_rule() {
  terraform -chdir="$tf_dir" plan -input=false -compact-warnings -target="$rule" -out="$plan/rotation.tfplan" "$@" >"$plan/plan.txt" ||
    { cat "$plan/plan.txt" >&2; fail "terraform plan of the load balancer's rule failed; run again to resume"; }
  terraform -chdir="$tf_dir" show -json "$plan/rotation.tfplan" >"$plan/plan.json"
  python3 - "$plan/plan.json" "$rule" <<'EOF'
import json, sys
plan, rule = json.load(open(sys.argv[1])), sys.argv[2]
changed = [c["address"] for c in plan.get("resource_changes", []) if c["change"]["actions"] not in (["no-op"], ["read"])]
others = [address for address in changed if address != rule]
print(" ".join(others) if others else ("update" if changed else "none"))
EOF
}

apply_rule() {
  local changes
  changes=$(plan_rule "$@")
  case $changes in
    none) echo "  the load balancer's rule already accepts the secret's values" ;;
    update)
      sed -n '/^Terraform will perform/,$p' "$plan/plan.txt" | sed 's/^/    /'
      terraform -chdir="$tf_dir" apply -input=false "$plan/rotation.tfplan" >/dev/null ||
        fail "terraform apply of the load balancer's rule failed; run again to resume"
      echo "  the load balancer's rule now accepts the secret's values" ;;
    *)
      fail "the plan would also change $changes: run \`make apply\` first, then rotate again to resume" ;;
  esac
  rm -f "$plan"/*
}

check() {
  $check_command || fail "the service check failed after $1; nothing further was changed (run again to resume)"
}

# Before anything changes: a change waiting for `make apply` in what the rule depends on would
# ride along with the rotation's targeted applies.
pending=$(plan_rule "$@")
[[ $pending == none || $pending == update ]] ||
  fail "the plan would also change $pending: run \`make apply\` first, then rotate (nothing was changed)"
rm -f "$plan"/*

step "1/3 prepare: a new value, accepted by the load balancer beside the current one"
invoke prepare
apply_rule "$@"
check "prepare"

step "2/3 promote: CloudFront sends the new value"
invoke promote
$wait_command "$distribution_id" || fail "CloudFront did not finish deploying $distribution_id; run again to resume"
check "promote"

step "3/3 retire: the old value is no longer accepted"
invoke retire
apply_rule "$@"
check "retire"
echo "rotation complete"
