data "aws_iam_policy_document" "assume_by_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume_by_lambda.json
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:Encrypted at rest by CloudWatch Logs with AWS owned keys; the function never logs the secret, so a customer managed key would add cost and a key policy without protecting anything.
  #checkov:skip=CKV_AWS_338:A year of logs for a function that runs once per apply is not worth keeping; the retention is a variable.
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "permissions" {
  statement {
    sid       = "ReadAndUpdateThisDistributionOnly"
    actions   = ["cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution"]
    resources = [var.distribution_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "update-origin-header"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.permissions.json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray would need xray:PutTraceSegments on a role deliberately limited to two CloudFront actions and its logs; the function runs once per apply.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is refused on accounts at the default concurrency limit, and only Terraform invokes the function.
  #checkov:skip=CKV_AWS_116:A dead-letter queue applies to asynchronous invocations; Terraform invokes synchronously and fails the apply on error.
  #checkov:skip=CKV_AWS_117:The function calls only the public CloudFront API; inside a VPC it would need a NAT gateway to reach it.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the build does not have; the package comes from this repository's `make lambda`.
  function_name    = var.name
  role             = aws_iam_role.this.arn
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = 128
  timeout          = 30

  # The role's permissions and the log group exist before the function does, which also gives
  # IAM a few seconds to propagate them before the first invocation.
  depends_on = [aws_iam_role_policy.this, aws_cloudwatch_log_group.this]
}

# Runs the function when this resource is created (sets the header), when its input changes (for
# instance a new rotation token) and when it is destroyed (removes the header).
resource "aws_lambda_invocation" "this" {
  function_name   = aws_lambda_function.this.function_name
  lifecycle_scope = "CRUD"

  input = jsonencode({
    DistributionId = var.distribution_id
    OriginId       = var.origin_id
    HeaderName     = var.header_name
    RotationToken  = var.rotation
  })
}

# Read after the invocation, so during a rotation it sees the distribution still deploying the
# new header.
data "aws_cloudfront_distribution" "after_invocation" {
  id = var.distribution_id

  depends_on = [aws_lambda_invocation.this]
}

locals {
  result = jsondecode(aws_lambda_invocation.this.result)

  # Edges keep sending the previous value until CloudFront reports the new configuration deployed;
  # the next apply after that stops accepting it.
  rotation_in_progress = data.aws_cloudfront_distribution.after_invocation.status != "Deployed"
}
