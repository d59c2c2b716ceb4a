#!/usr/bin/env bash
# Makes sure the account has ECS's service-linked role (AWSServiceRoleForECS) before the first
# apply. ECS creates it by itself on first use, but in an account that has never used ECS the
# CreateService call can come before IAM has finished propagating it, and the apply fails with
# "Unable to assume the service linked role". Creating it first closes that race. A role that
# exists already (any earlier ECS use, or a concurrent creator) is success: the role is shared by
# every ECS cluster of the account, so nothing here ever deletes it.
#
#   scripts/ensure-service-linked-role.sh        (AWS credentials and region from the environment)
set -euo pipefail

role=AWSServiceRoleForECS
service=ecs.amazonaws.com

if aws iam get-role --role-name "$role" >/dev/null 2>&1; then
  echo "$role exists"
  exit 0
fi
if ! error=$(aws iam create-service-linked-role --aws-service-name "$service" 2>&1 >/dev/null); then
  # IAM's answer when the role exists (for a caller that may not read it, or that lost a race with
  # another creator): success, like finding it.
  if [[ $error == *"has been taken in this account"* ]]; then
    echo "$role exists"
    exit 0
  fi
  # Someone else may have created it between the two calls: only its absence is a failure.
  if ! aws iam get-role --role-name "$role" >/dev/null 2>&1; then
    echo "Could not create the ECS service-linked role $role: $error" >&2
    echo "It needs iam:CreateServiceLinkedRole for $service (or an administrator creates it once:" \
      "aws iam create-service-linked-role --aws-service-name $service). Nothing else was changed." >&2
    exit 1
  fi
fi
# IAM is eventually consistent: wait until the role can be read before ECS is asked to use it.
for _ in $(seq 1 30); do
  if aws iam get-role --role-name "$role" >/dev/null 2>&1; then
    echo "$role created"
    exit 0
  fi
  sleep 2
done
echo "$role was created but cannot be read after 60 s; run the apply again in a minute." >&2
exit 1
