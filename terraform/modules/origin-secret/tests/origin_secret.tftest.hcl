# The secret travels only through Secrets Manager: the invocation's input and answer name the
# secret, never a value; what Terraform reads back is sensitive; during a rotation the load
# balancer accepts every value the document holds. Mocked provider: no account needed.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/websocket-test-origin-secret" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/websocket-test-origin-secret" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:websocket-test-origin-secret-AbCdEf" }
  }
  mock_resource "aws_lambda_invocation" {
    defaults = { result = "{\"SecretId\":\"arn:aws:secretsmanager:eu-west-1:123456789012:secret:websocket-test-origin-secret-AbCdEf\",\"VersionId\":\"00000000-0000-0000-0000-000000000001\"}" }
  }
  mock_data "aws_secretsmanager_secret_version" {
    defaults = { secret_string = "{\"current\":\"1111111111111111111111111111111111111111111111111111111111111111\"}" }
  }
}

variables {
  name             = "websocket-test-origin-secret"
  lambda_zip_path  = "tests/empty.zip"
  distribution_id  = "E2EXAMPLE0ABCD"
  distribution_arn = "arn:aws:cloudfront::123456789012:distribution/E2EXAMPLE0ABCD"
  origin_id        = "alb"
}

run "only_the_secret_arn_crosses_terraform" {
  command = apply

  assert {
    condition     = keys(jsondecode(aws_lambda_invocation.this.input)) == ["SecretId"]
    error_message = "The invocation's input names the secret and nothing else."
  }
  assert {
    condition     = issensitive(output.current_header_value) && issensitive(output.accepted_header_values)
    error_message = "Every value read back is sensitive."
  }
  assert {
    condition     = length(output.accepted_header_values) == 1
    error_message = "Outside a rotation only the current value is accepted."
  }
  assert {
    condition     = output.rotation_input.SecretId == aws_secretsmanager_secret.this.arn && output.rotation_input.DistributionId == "E2EXAMPLE0ABCD"
    error_message = "make rotate-secret gets the secret, distribution, origin and header to name in each phase."
  }
}

run "during_a_rotation_the_origin_accepts_both_values" {
  command = apply

  override_data {
    target = data.aws_secretsmanager_secret_version.this
    values = {
      secret_string = "{\"current\":\"1111111111111111111111111111111111111111111111111111111111111111\",\"pending\":\"2222222222222222222222222222222222222222222222222222222222222222\"}"
    }
  }

  assert {
    condition     = nonsensitive(output.accepted_header_values) == tolist(["1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"])
    error_message = "After the prepare phase the origin accepts the current and the pending value."
  }
  assert {
    condition     = nonsensitive(output.current_header_value) == "1111111111111111111111111111111111111111111111111111111111111111"
    error_message = "CloudFront keeps sending the current value until the promote phase."
  }
}

run "after_promotion_the_previous_value_stays_until_retired" {
  command = apply

  override_data {
    target = data.aws_secretsmanager_secret_version.this
    values = {
      secret_string = "{\"current\":\"2222222222222222222222222222222222222222222222222222222222222222\",\"previous\":\"1111111111111111111111111111111111111111111111111111111111111111\"}"
    }
  }

  assert {
    condition     = length(output.accepted_header_values) == 2 && nonsensitive(output.current_header_value) == "2222222222222222222222222222222222222222222222222222222222222222"
    error_message = "Edges still sending the previous value are accepted until the retire phase."
  }
}
