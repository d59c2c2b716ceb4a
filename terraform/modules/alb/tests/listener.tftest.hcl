# One listener: HTTP on 80 without a certificate (the default), HTTPS on 443 with one, the security
# group opening the same port to CloudFront's prefix list only; the secret-header rule and the 403
# default either way. Mocked provider: no account needed.

mock_provider "aws" {
  mock_data "aws_ec2_managed_prefix_list" {
    defaults = { id = "pl-3b927c52" }
  }
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/websocket-test/0123456789abcdef" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/websocket-test/0123456789abcdef" }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/websocket-test/0123456789abcdef/0123456789abcdef" }
  }
}

variables {
  name                        = "websocket-test"
  vpc_id                      = "vpc-0123456789abcdef0"
  vpc_cidr_block              = "10.0.0.0/16"
  subnet_ids                  = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  origin_secret_header_name   = "X-Origin-Verify"
  origin_secret_header_values = ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
}

run "without_a_certificate_http_on_80" {
  command = plan

  assert {
    condition     = aws_lb_listener.this.port == 80 && aws_lb_listener.this.protocol == "HTTP" && aws_lb_listener.this.certificate_arn == null
    error_message = "Without a certificate the listener is HTTP on 80."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_cloudfront.from_port == 80 && aws_vpc_security_group_ingress_rule.from_cloudfront.prefix_list_id == "pl-3b927c52"
    error_message = "Port 80 is open to CloudFront's origin-facing prefix list only."
  }
}

run "with_a_certificate_https_on_443_and_nothing_on_80" {
  command = plan

  variables {
    https           = true
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000002"
  }

  assert {
    condition     = aws_lb_listener.this.port == 443 && aws_lb_listener.this.protocol == "HTTPS" && aws_lb_listener.this.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    error_message = "With a certificate the listener is HTTPS on 443, TLS 1.2 or later."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_cloudfront.from_port == 443 && aws_vpc_security_group_ingress_rule.from_cloudfront.to_port == 443
    error_message = "Only 443 is open: port 80 and its rule go away."
  }
  assert {
    condition     = aws_lb_listener.this.default_action[0].fixed_response[0].status_code == "403" && aws_lb_listener_rule.forward_with_secret.priority == 1
    error_message = "The 403 default and the secret-header rule stay on the HTTPS listener."
  }
}

run "a_certificate_that_is_not_acm_is_refused" {
  command = plan

  variables {
    https           = true
    certificate_arn = "arn:aws:iam::123456789012:server-certificate/websocket"
  }

  expect_failures = [var.certificate_arn]
}

run "internet_facing_by_default" {
  command = plan

  assert {
    condition     = !aws_lb.this.internal && aws_vpc_security_group_ingress_rule.from_cloudfront.referenced_security_group_id == null
    error_message = "By default the load balancer is internet-facing and admits CloudFront's prefix list, no security group."
  }
}

run "internal_admits_only_the_vpc_origin" {
  command = plan

  variables {
    internal                     = true
    vpc_origin_security_group_id = "sg-0c10d0f0f0f0f0f0f"
    https                        = true
    certificate_arn              = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000002"
  }

  assert {
    condition     = aws_lb.this.internal
    error_message = "With internal the load balancer has no public address."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_cloudfront.referenced_security_group_id == "sg-0c10d0f0f0f0f0f0f" && aws_vpc_security_group_ingress_rule.from_cloudfront.prefix_list_id == null && aws_vpc_security_group_ingress_rule.from_cloudfront.from_port == 443
    error_message = "An internal load balancer admits the listener's port from the VPC origin's security group only, not from the prefix list."
  }
}

run "internal_without_the_vpc_origin_security_group_is_refused" {
  command = plan

  variables {
    internal = true
  }

  expect_failures = [var.vpc_origin_security_group_id]
}

run "the_vpc_origin_security_group_on_an_internet_facing_load_balancer_is_refused" {
  command = plan

  variables {
    vpc_origin_security_group_id = "sg-0c10d0f0f0f0f0f0f"
  }

  expect_failures = [var.vpc_origin_security_group_id]
}

run "https_without_a_certificate_is_refused" {
  command = plan

  variables {
    https = true
  }

  expect_failures = [var.certificate_arn]
}
