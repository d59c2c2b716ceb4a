# Through a VPC origin, a distribution of its own (a new state): CloudFront reaches an internal load
# balancer through a VPC origin instead of the internet, and returns the security group CloudFront
# gives it for the load balancer to admit. Moving an existing distribution between the two ways is
# refused with the way out. Mocked providers: no account needed (the emulator the e2e uses has no
# VPC origins).

# Shared with the other test files: tests/mocks/*/aws.tfmock.hcl.
mock_provider "aws" {
  source = "./tests/mocks/global"
}

mock_provider "aws" {
  alias  = "us_east_1"
  source = "./tests/mocks/us-east-1"
}

override_data {
  target = data.aws_security_group.vpc_origin
  values = { id = "sg-0c10d0f0f0f0f0f0f" }
}

variables {
  name               = "websocket-test"
  origin_domain_name = "internal-websocket-test-1234567890.eu-west-1.elb.amazonaws.com"
  origin_secret_header = {
    name  = "X-Origin-Verify"
    value = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }
  vpc_origin = {
    load_balancer_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/websocket-test/0123456789abcdef"
    vpc_id            = "vpc-0123456789abcdef0"
  }
}

run "with_a_domain_the_vpc_origin_speaks_https_to_the_domain" {
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
    condition     = aws_cloudfront_vpc_origin.this[0].vpc_origin_endpoint_config[0].origin_protocol_policy == "https-only" && aws_cloudfront_vpc_origin.this[0].vpc_origin_endpoint_config[0].https_port == 443 && aws_cloudfront_vpc_origin.this[0].vpc_origin_endpoint_config[0].origin_ssl_protocols[0].items == toset(["TLSv1.2"])
    error_message = "With a domain the VPC origin speaks HTTPS only, TLS 1.2, on 443."
  }
  assert {
    condition     = alltrue([for origin in nonsensitive(aws_cloudfront_distribution.this.origin) : origin.domain_name == "origin.ws.example.com"])
    error_message = "The origin's name is the one the load balancer's certificate covers."
  }
}

run "through_a_vpc_origin" {
  command = apply

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = aws_cloudfront_vpc_origin.this[0].vpc_origin_endpoint_config[0].arn == var.vpc_origin.load_balancer_arn && aws_cloudfront_vpc_origin.this[0].vpc_origin_endpoint_config[0].origin_protocol_policy == "http-only"
    error_message = "The VPC origin points at the load balancer; without a domain it speaks HTTP (inside AWS's network)."
  }
  assert {
    condition = alltrue([
      for origin in nonsensitive(aws_cloudfront_distribution.this.origin) :
      length(origin.custom_origin_config) == 0 && length(origin.vpc_origin_config) == 1 && origin.vpc_origin_config[0].vpc_origin_id == aws_cloudfront_vpc_origin.this[0].id
    ])
    error_message = "The distribution's origin goes through the VPC origin, not over the internet."
  }
  assert {
    condition     = alltrue([for origin in nonsensitive(aws_cloudfront_distribution.this.origin) : anytrue([for header in origin.custom_header : header.name == "X-Origin-Verify"])])
    error_message = "The secret header stays on the origin, as defence in depth."
  }
  assert {
    condition     = output.vpc_origin_security_group_id == "sg-0c10d0f0f0f0f0f0f"
    error_message = "The module returns the security group CloudFront gives the VPC origin, for the load balancer to admit."
  }
}

# The distribution created above goes through the VPC origin over HTTP; with a domain the VPC
# origin would switch to HTTPS in place while the distribution kept sending the load balancer's own
# name, which its certificate does not cover.
run "turning_the_domain_on_through_the_vpc_origin_is_refused_with_the_way_out" {
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

  expect_failures = [aws_cloudfront_distribution.this]
}

run "leaving_the_vpc_origin_is_refused_with_the_way_out" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    origin_domain_name = "websocket-test-1234567890.eu-west-1.elb.amazonaws.com"
    vpc_origin         = null
  }

  expect_failures = [aws_cloudfront_distribution.this]
}

run "a_vpc_origin_that_is_not_an_application_load_balancer_is_refused" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    vpc_origin = {
      load_balancer_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/websocket-test/0123456789abcdef"
      vpc_id            = "vpc-0123456789abcdef0"
    }
  }

  expect_failures = [var.vpc_origin]
}
