# The distribution starts with the secret header, marked sensitive, and its access logs go through
# standard logging v2 to a CloudWatch log group in us-east-1 (no S3 bucket, no ACLs), which works
# from every region. Mocked providers: no account needed.

# Shared with the other test file: tests/mocks/*/aws.tfmock.hcl.
mock_provider "aws" {
  source = "./tests/mocks/global"
}

mock_provider "aws" {
  alias  = "us_east_1"
  source = "./tests/mocks/us-east-1"
}

variables {
  name               = "websocket-test"
  origin_domain_name = "websocket-test-1234567890.eu-west-1.elb.amazonaws.com"
  origin_secret_header = {
    name  = "X-Origin-Verify"
    value = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }
}

run "secret_header_on_the_origin_and_marked" {
  command = apply

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = issensitive(aws_cloudfront_distribution.this.origin)
    error_message = "The origin carries the secret: it must be sensitive in the state, so no plan prints it."
  }
  assert {
    condition = alltrue([
      for origin in nonsensitive(aws_cloudfront_distribution.this.origin) : anytrue([
        for header in origin.custom_header : header.name == "X-Origin-Verify"
      ])
    ])
    error_message = "CloudFront starts with the secret header on the origin."
  }
}

run "access_logs_through_standard_logging_v2" {
  command = apply

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = length(aws_cloudfront_distribution.this.logging_config) == 0
    error_message = "No legacy (S3, ACL) logging: it fails in opt-in regions."
  }
  assert {
    condition     = aws_cloudwatch_log_delivery_source.access.log_type == "ACCESS_LOGS" && aws_cloudwatch_log_delivery_source.access.resource_arn == aws_cloudfront_distribution.this.arn
    error_message = "The delivery source is the distribution's access logs."
  }
  assert {
    condition     = aws_cloudwatch_log_delivery_destination.access.delivery_destination_configuration[0].destination_resource_arn == aws_cloudwatch_log_group.access.arn
    error_message = "The logs go to the access log group."
  }
  assert {
    condition     = aws_cloudwatch_log_group.access.retention_in_days == 30
    error_message = "Access logs expire."
  }
}

run "retention_must_be_one_cloudwatch_offers" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    log_retention_days = 45
  }

  expect_failures = [var.log_retention_days]
}

# The distribution created by the runs above speaks HTTP to its origin; switching an existing one
# to HTTPS would be ignored (ignore_changes = [origin]) while the listener moved to 443.
run "switching_an_existing_distribution_to_https_is_refused_with_the_way_out" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    origin_https = true
  }

  expect_failures = [aws_cloudfront_distribution.this]
}

# POST /v1/publish goes through the default behaviour: POST must be allowed, nothing cached, and
# the viewer's Authorization header forwarded (the AllViewer origin request policy does, which
# CloudFront allows only with caching disabled).
run "http_publishing_passes_through_uncached" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = contains(aws_cloudfront_distribution.this.default_cache_behavior[0].allowed_methods, "POST")
    error_message = "POST must reach the origin (POST /v1/publish)."
  }
  assert {
    condition     = aws_cloudfront_distribution.this.default_cache_behavior[0].cache_policy_id == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    error_message = "The default behaviour caches nothing (managed CachingDisabled)."
  }
  assert {
    condition     = aws_cloudfront_distribution.this.default_cache_behavior[0].origin_request_policy_id == "216adef6-5c7f-47e4-b989-5492eafa07d3"
    error_message = "The viewer's headers, Authorization included, reach the origin (managed AllViewer)."
  }
}
