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

# The secret's home. The function writes every value into it (Terraform never sees one in clear:
# it reads the document back through a data source the provider marks sensitive).
resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS managed key; a customer managed key would add cost and a key policy for the function and Terraform alone.
  #checkov:skip=CKV2_AWS_57:Rotation runs in two phases checked between them (`make rotate-secret`), which Secrets Manager's single-function rotation schedule cannot express.
  name_prefix = "${var.name}-"
  description = "Secret origin header of ${var.name}: {\"current\", \"pending\", \"previous\"} values, written by the ${var.name} function"
  # `make destroy` deletes it at once, so a new deployment of the same name can follow.
  recovery_window_in_days = 0
}

data "aws_iam_policy_document" "secret" {
  statement {
    sid       = "ReadAndWriteThisSecretOnly"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    resources = [aws_secretsmanager_secret.this.arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

resource "aws_iam_role_policy" "secret" {
  name   = "secret-and-logs"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.secret.json
}

# Only the rotation's promote and retire phases touch CloudFront. Kept apart from the policy above
# because the distribution is created after the first value exists (it starts with it), so
# nothing the first invocation waits for may depend on the distribution.
data "aws_iam_policy_document" "distribution" {
  statement {
    sid       = "ReadAndUpdateThisDistributionOnly"
    actions   = ["cloudfront:GetDistribution", "cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution"]
    resources = [var.distribution_arn]
  }
}

resource "aws_iam_role_policy" "distribution" {
  name   = "rotate-origin-header"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.distribution.json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray would need xray:PutTraceSegments on a role deliberately limited to one secret, one distribution and its logs; the function runs a few times per deployment.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is refused on accounts at the default concurrency limit, and only Terraform and `make rotate-secret` invoke the function.
  #checkov:skip=CKV_AWS_116:A dead-letter queue applies to asynchronous invocations; every invocation is synchronous and its caller fails on error.
  #checkov:skip=CKV_AWS_117:The function calls only the public CloudFront and Secrets Manager APIs; inside a VPC it would need a NAT gateway or endpoints to reach them.
  #checkov:skip=CKV_AWS_173:Its environment holds no secret (only what the runtime sets), so there is nothing for a customer managed key to protect.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the build does not have; the package comes from this repository's `make lambda`.
  function_name    = var.name
  role             = aws_iam_role.this.arn
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = 128
  # Room for the first invocation to wait out IAM propagating its role's policy (it retries
  # AccessDenied for up to 60 s, ending 5 s before this deadline) instead of failing the apply.
  timeout = 90

  # The role's permissions and the log group exist before the function does, which also gives
  # IAM a few seconds to propagate them before the first invocation.
  depends_on = [aws_iam_role_policy.secret, aws_cloudwatch_log_group.this]
}

# Runs the function when this resource is created (a first value goes into the secret, unless
# one is there already), when its input changes, and when it is destroyed (nothing to undo: the
# secret goes with its resource). Its result names the secret's version, never a value.
resource "aws_lambda_invocation" "this" {
  function_name   = aws_lambda_function.this.function_name
  lifecycle_scope = "CRUD"

  input = jsonencode({
    SecretId = aws_secretsmanager_secret.this.arn
  })
}

# The document as it is now: read at plan time when nothing above changes, so an apply after a
# rotation phase (which wrote a new version) passes its values on to the load balancer.
data "aws_secretsmanager_secret_version" "this" {
  secret_id = aws_secretsmanager_secret.this.arn

  depends_on = [aws_lambda_invocation.this]
}

locals {
  document = jsondecode(data.aws_secretsmanager_secret_version.this.secret_string)
  # Every value the origin must accept: the one CloudFront sends, and during a rotation the one
  # it is about to send (pending) or was sending until the new one has deployed (previous).
  accepted_values = compact([
    local.document.current,
    try(local.document.pending, null),
    try(local.document.previous, null),
  ])
}
