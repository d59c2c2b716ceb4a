# Sourced by e2e.sh and plans.sh: an AWS emulator (moto_server.py) on 127.0.0.1 and a copy of
# terraform/ whose providers talk to it, with dummy credentials, so nothing reaches AWS. The caller
# sets `test_name` first; everything started with `start` is stopped on exit, and the logs of a
# failed run are shown.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
plugin_dir=${TF_PLUGIN_DIR:-/opt/tf-plugins}
SECONDS=0

step() { printf '\n=== [%3ds] %s\n' "$SECONDS" "$*"; }
fail() { printf '%s FAILED: %s\n' "$test_name" "$*" >&2; exit 1; }

# require_tools tool...: each on PATH, moto and boto3 importable, the provider mirror present.
require_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || fail "missing tools: ${missing[*]} (cargo-lambda, checkov and aws come from \`make tools\`; terraform from /usr/local/bin)"
  python3 -c 'import moto.server, boto3' 2>/dev/null || fail "python3 cannot import moto and boto3 (run \`make tools\` and put .venv/bin first on PATH)"
  [[ -d $plugin_dir/registry.terraform.io/hashicorp/aws ]] || fail "no AWS provider mirror in $plugin_dir"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/tf-$test_name.XXXXXX")
declare -a groups=()
cleanup() {
  local status=$?
  for pgid in "${groups[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((status != 0)); then
    for log in "$work"/*.log; do
      [[ -f $log ]] || continue
      printf '\n--- last lines of %s\n' "$(basename "$log")" >&2
      tail -n 25 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

# Runs a server in its own process group (setsid) so cleanup stops it with all its children
# (cargo lambda watch runs the function as a child process).
start() {
  local log=$1
  shift
  setsid "$@" >"$work/$log" 2>&1 &
  groups+=("$!")
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_port() {
  local port=$1 what=$2 deadline=$((SECONDS + ${3:-60}))
  until python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "$what did not listen on 127.0.0.1:$port"
    sleep 0.5
  done
}

# The emulator's world only: dummy credentials, no profile, no real endpoint.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
# Nothing leaves the machine: no Terraform version check, no crates.io (dependencies must be built
# already, as `make test` does before this).
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1 CARGO_NET_OFFLINE=true
[[ -f ${TF_CLI_CONFIG_FILE:-$HOME/.terraformrc} ]] || export TF_CLI_CONFIG_FILE=/dev/null

# start_moto: moto_server.py on a port the kernel picks (-p 0), read from the line it prints once
# it listens, so that no other process can take it first; sets moto_port and moto (its URL).
start_moto() {
  step "moto_server"
  # AWS managed policies (AmazonEC2ContainerServiceforEC2Role) exist only when moto is asked to load them.
  start moto.log env MOTO_IAM_LOAD_MANAGED_POLICIES=true python3 "$here/moto_server.py" -H 127.0.0.1 -p 0
  local deadline=$((SECONDS + 60))
  until moto=$(grep -oE -m1 'Running on http://127\.0\.0\.1:[0-9]+' "$work/moto.log" 2>/dev/null); do
    ((SECONDS < deadline)) || fail "moto_server printed no address in 60 s"
    sleep 0.2
  done
  moto=${moto#Running on }
  moto_port=${moto##*:}
  echo "  listening on $moto"
}

# copy_terraform DIR LAMBDA_ENDPOINT: terraform/ copied to DIR, with e2e_override.tf pointing both
# AWS providers at moto (the Lambda API at LAMBDA_ENDPOINT); the production files are not changed.
copy_terraform() {
  local dir=$1 lambda_endpoint=$2 endpoints="" service
  mkdir "$dir"
  tar -C "$repo/terraform" --exclude=.terraform --exclude=.terraform.lock.hcl --exclude='*.tfstate*' --exclude=./test -cf - . | tar -C "$dir" -xf -
  for service in autoscaling appautoscaling cloudfront cloudwatch ec2 ecr ecs elasticache elbv2 events iam kms logs s3 secretsmanager sns ssm sts; do
    endpoints+="    $service = \"$moto\""$'\n'
  done
  provider_block() {
    cat <<PROVIDER
provider "aws" {
  $1
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  # An emulator error is final: no minutes of retries before the test fails.
  max_retries = 2

  endpoints {
$endpoints    lambda = "$lambda_endpoint"
  }
}
PROVIDER
  }
  {
    echo "# Test only: the AWS providers talk to moto (and the Lambda endpoint to $lambda_endpoint)."
    provider_block ""
    provider_block 'alias = "us_east_1"'
  } >"$dir/e2e_override.tf"
}

# terraform in the copy. Each step gets a deadline, so a stuck step fails the test instead of
# hanging it; AWS_ENDPOINT_URL sends any service missing from the override to moto too, never to AWS.
tf() { AWS_ENDPOINT_URL=$moto timeout --kill-after=10 300 terraform -chdir="$work/tf" "$@"; }

# A stand-in for the custom-header-fn package: moto stores it without running it.
placeholder_lambda_zip() {
  python3 - "$1" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as package:
    package.writestr("bootstrap", "#!/bin/sh\n# placeholder: the e2e runs the function with cargo lambda watch\n")
PY
}
