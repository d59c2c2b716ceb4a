#!/usr/bin/env bash
# Every deployment mode planned from nothing against an AWS emulator (moto), offline, talking only
# to 127.0.0.1, and each plan scanned by checkov:
#   public          the default: internet-facing load balancer, HTTP to it (what the e2e applies)
#   public-domain   domain_name: HTTPS to the load balancer, the domain's certificates and records
#   vpc             origin_access = "vpc": internal load balancer behind a CloudFront VPC origin
#   vpc-domain      both, with every optional part on as well (EC2 capacity, ECS Exec, a Redis
#                   replica, alarm email), so that checkov sees every resource the code can create
# Each plan must hold the resources of its mode and none of the others'; a VPC origin without
# private subnets must be refused with the message naming both settings. Only the default mode is
# applied end to end (e2e.sh): moto has no CloudFront VPC origins, so those plans are as far as an
# offline proof goes. A missing tool fails the test; nothing is skipped.
set -euo pipefail

test_name=plans
source "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"

require_tools terraform checkov python3
start_moto
copy_terraform "$work/tf" "$moto"
placeholder_lambda_zip "$work/bootstrap.zip"
tf init -backend=false -plugin-dir="$plugin_dir" >/dev/null

common=(-var image_tag=plans -var "lambda_zip_path=$work/bootstrap.zip")
domain=(-var domain_name=ws.example.com -var hosted_zone_id=Z0123456789EXAMPLE0AB)
vpc=(-var origin_access=vpc -var enable_private_subnets=true)
everything=(-var run_on_ec2=true -var enable_execute_command=true -var redis_replicas=1 -var alarm_email=ops@example.com -var enable_http_publish=true -var 'sign_in={jwks_url="https://idp.example.com/.well-known/jwks.json",issuer="https://idp.example.com/",audience="websocket"}')
declare -A mode_vars=(
  [public]=""
  [public-domain]="${domain[*]}"
  [vpc]="${vpc[*]}"
  [vpc-domain]="${vpc[*]} ${domain[*]} ${everything[*]}"
)

for mode in public public-domain vpc vpc-domain; do
  step "$mode: terraform plan, then checkov on the plan"
  read -ra extra <<<"${mode_vars[$mode]}"
  tf plan -no-color -out="$work/$mode.tfplan" "${common[@]}" "${extra[@]}" >"$work/$mode.log" 2>&1 ||
    fail "the $mode plan failed (see $mode.log below)"
  tf show -json "$work/$mode.tfplan" >"$work/$mode.json"
  python3 "$here/plan_mode.py" "$mode" "$work/$mode.json" || fail "the $mode plan does not hold what the mode needs"
  # The plan enriched from the code, so each inline checkov:skip (with its reason) applies.
  checkov --file "$work/$mode.json" --framework terraform_plan --repo-root-for-plan-enrichment "$work/tf" \
    --skip-download --quiet --compact --output cli >"$work/checkov-$mode.log" 2>&1 ||
    { cat "$work/checkov-$mode.log"; fail "checkov reports failed checks in the $mode plan"; }
  grep -E 'Passed checks' "$work/checkov-$mode.log" | sed 's/^/  checkov: /' || true
done

step "origin_access = \"vpc\" without private subnets is refused, naming both settings"
if tf plan -no-color "${common[@]}" -var origin_access=vpc >"$work/refused.log" 2>&1; then
  fail "a VPC origin without private subnets was planned"
fi
grep -q 'origin_access = "vpc" needs enable_private_subnets = true' "$work/refused.log" ||
  { cat "$work/refused.log"; fail "the refusal does not say what to set"; }
echo "  ok: refused with the setting to add"

step "plans passed in ${SECONDS}s"
