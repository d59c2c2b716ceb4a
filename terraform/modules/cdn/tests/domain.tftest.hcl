# With a domain, a distribution of its own (a new state: the runs in cdn.tftest.hcl created one
# that speaks HTTP to its origin): HTTPS to the origin, the domain's certificate for viewers, and
# the inputs that cannot work refused. Mocked providers: no account needed.

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

run "with_a_domain_the_origin_is_https_and_viewers_get_its_certificate" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    origin_domain_name  = "origin.ws.example.com"
    origin_https        = true
    aliases             = ["ws.example.com"]
    acm_certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000001"
  }

  assert {
    condition = alltrue([
      for origin in nonsensitive(aws_cloudfront_distribution.this.origin) : alltrue([
        for config in origin.custom_origin_config : config.origin_protocol_policy == "https-only" && config.origin_ssl_protocols == toset(["TLSv1.2"]) && config.https_port == 443
      ])
    ])
    error_message = "With a domain CloudFront reaches the origin over HTTPS only, TLS 1.2, port 443."
  }
  assert {
    condition     = aws_cloudfront_distribution.this.aliases == toset(["ws.example.com"]) && aws_cloudfront_distribution.this.viewer_certificate[0].ssl_support_method == "sni-only" && aws_cloudfront_distribution.this.viewer_certificate[0].minimum_protocol_version == "TLSv1.2_2021" && !aws_cloudfront_distribution.this.viewer_certificate[0].cloudfront_default_certificate
    error_message = "Viewers get the domain's certificate, SNI, TLS 1.2 at least."
  }
}

run "aliases_without_a_certificate_are_refused" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    aliases = ["ws.example.com"]
  }

  expect_failures = [var.aliases]
}

run "a_certificate_outside_us_east_1_is_refused" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    aliases             = ["ws.example.com"]
    acm_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000001"
  }

  expect_failures = [var.acm_certificate_arn]
}
