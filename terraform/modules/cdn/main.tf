locals {
  origin_id = "alb"

  # AWS managed policies, referred to by the IDs AWS documents for them (they are the same in every
  # account). CachingDisabled: every request reaches the origin, as a WebSocket upgrade must.
  # AllViewer: forwards every viewer header (Sec-WebSocket-Key, -Version, -Protocol, -Extensions
  # included), cookies and query strings, the policy CloudFront's WebSocket guide names.
  # SecurityHeadersPolicy: HSTS, X-Content-Type-Options and friends on the HTTP answers.
  caching_disabled_policy_id       = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
  all_viewer_origin_request_policy = "216adef6-5c7f-47e4-b989-5492eafa07d3"
  security_headers_response_policy = "67f7725c-6f97-4210-82d7-5512b31e9d03"
  origin_read_timeout_seconds      = 30
  origin_keepalive_timeout_seconds = 5
  all_methods                      = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
  origin_protocol_policy           = var.origin_https ? "https-only" : "http-only"
  origin_route                     = var.vpc_origin == null ? "over the internet" : "through a VPC origin"
}

# CloudFront's way into a VPC: network interfaces it places in the internal load balancer's subnets,
# so the load balancer needs no public address at all. WebSocket upgrades pass through it like
# any other request. Its protocol settings are the ones a custom origin would have.
resource "aws_cloudfront_vpc_origin" "this" {
  count = var.vpc_origin == null ? 0 : 1

  vpc_origin_endpoint_config {
    name                   = var.name
    arn                    = var.vpc_origin.load_balancer_arn
    http_port              = 80
    https_port             = 443
    origin_protocol_policy = local.origin_protocol_policy

    origin_ssl_protocols {
      items    = ["TLSv1.2"]
      quantity = 1
    }
  }

  # Deploying a VPC origin can take up to 15 minutes (CloudFront places network interfaces in the
  # load balancer's subnets); twice that leaves a margin before Terraform gives up.
  timeouts {
    create = "30m"
    update = "30m"
    delete = "30m"
  }
}

# The security group CloudFront creates in the VPC with its first VPC origin there, and gives
# the origin's network interfaces: the load balancer admits it, and nothing else. Read after the
# VPC origin exists; the name is the one CloudFront gives it.
data "aws_security_group" "vpc_origin" {
  count = length(aws_cloudfront_vpc_origin.this)

  vpc_id = var.vpc_origin.vpc_id
  name   = "CloudFront-VPCOrigins-Service-SG"

  depends_on = [aws_cloudfront_vpc_origin.this]
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_68:No WAF WebACL: a cost decision left to the operator; the origin is closed to everything but this distribution.
  #checkov:skip=CKV2_AWS_47:No WAF WebACL, see CKV_AWS_68.
  #checkov:skip=CKV_AWS_174:With a domain the minimum is TLSv1.2_2021; without one the default *.cloudfront.net certificate, which always allows TLSv1, is the only certificate there is.
  #checkov:skip=CKV2_AWS_42:No custom domain, hence the default certificate, see CKV_AWS_174.
  #checkov:skip=CKV_AWS_310:A single origin: failover would need a second deployment in another region.
  #checkov:skip=CKV_AWS_305:No default root object: the origin serves WebSocket endpoints and /health, no site.
  #checkov:skip=CKV_AWS_374:No geo restriction: a public broadcast service; restricting countries is a product decision.
  #checkov:skip=CKV2_AWS_46:False positive: the origin is a load balancer, not an S3 bucket, so there is no origin access to set.
  #checkov:skip=CKV_AWS_86:Access logs go through standard logging v2 (the aws_cloudwatch_log_delivery below), which this check, looking for the legacy logging_config, does not see.
  #checkov:skip=CKV2_AWS_32:False positive: the AWS managed SecurityHeadersPolicy is attached by its ID (response_headers_policy_id); the check only recognizes a policy resource.
  enabled         = true
  comment         = var.name
  price_class     = var.price_class
  is_ipv6_enabled = true

  origin {
    origin_id   = local.origin_id
    domain_name = var.origin_domain_name

    # The value CloudFront starts with. Its sensitivity is what marks the origin in the state, so
    # plans never print it, even after a refresh reads back a value the rotation function wrote.
    custom_header {
      name  = var.origin_secret_header.name
      value = var.origin_secret_header.value
    }

    # Over the internet to an internet-facing load balancer...
    dynamic "custom_origin_config" {
      for_each = var.vpc_origin == null ? [local.origin_protocol_policy] : []
      content {
        origin_protocol_policy   = custom_origin_config.value
        http_port                = 80
        https_port               = 443
        origin_ssl_protocols     = ["TLSv1.2"]
        origin_read_timeout      = local.origin_read_timeout_seconds
        origin_keepalive_timeout = local.origin_keepalive_timeout_seconds
      }
    }

    # ...or through the VPC origin to an internal one (its protocol is set on the VPC origin).
    dynamic "vpc_origin_config" {
      for_each = aws_cloudfront_vpc_origin.this
      content {
        vpc_origin_id            = vpc_origin_config.value.id
        origin_read_timeout      = local.origin_read_timeout_seconds
        origin_keepalive_timeout = local.origin_keepalive_timeout_seconds
      }
    }
  }

  default_cache_behavior {
    target_origin_id           = local.origin_id
    viewer_protocol_policy     = "https-only"
    allowed_methods            = local.all_methods
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = local.caching_disabled_policy_id
    origin_request_policy_id   = local.all_viewer_origin_request_policy
    response_headers_policy_id = local.security_headers_response_policy
    compress                   = false
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  aliases = var.aliases

  # With a domain: its ACM certificate (in us-east-1, where CloudFront reads certificates), SNI,
  # TLS 1.2 at least. Without one: *.cloudfront.net's default certificate.
  viewer_certificate {
    cloudfront_default_certificate = var.acm_certificate_arn == null
    acm_certificate_arn            = var.acm_certificate_arn
    ssl_support_method             = var.acm_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.acm_certificate_arn == null ? null : "TLSv1.2_2021"
  }

  lifecycle {
    # After creation the secret origin header belongs to the custom-header-fn Lambda, which
    # rotates it in two phases (see terraform/README.md, "Rotating the secret"), so Terraform must
    # not compare the origin with this configuration or it would put an older value back. The
    # cost: changes to the origin block reach a distribution only when it is created; the check
    # block after this resource says when the deployed origin has fallen behind.
    ignore_changes = [origin]

    # Because of that, switching HTTPS to the origin, or the VPC origin, on (or off) would never
    # reach an existing distribution, while the load balancer's listener moved to the other port
    # or the load balancer itself became internal under it: every request would fail. Refuse the
    # plan instead, saying how to move the distribution. Through a VPC origin the protocol lives
    # on the VPC origin, which Terraform does update, so there the origin's name (what CloudFront
    # checks the load balancer's certificate against) must be the configured one too.
    postcondition {
      condition = alltrue([
        for origin in self.origin :
        join(",", origin.vpc_origin_config[*].vpc_origin_id) == join(",", aws_cloudfront_vpc_origin.this[*].id) &&
        join(",", origin.custom_origin_config[*].origin_protocol_policy) == (var.vpc_origin == null ? local.origin_protocol_policy : "") &&
        (var.vpc_origin == null || origin.domain_name == var.origin_domain_name)
      ])
      error_message = "The distribution's origin is not as configured (${local.origin_route}, ${local.origin_protocol_policy}, to ${var.origin_domain_name}): HTTPS to the origin (domain_name) or the VPC origin (origin_access) was turned on or off after the distribution was created, and Terraform does not update its origin (the rotation function owns it). Replace the distribution in the same apply: terraform -chdir=terraform apply -replace=module.cdn.aws_cloudfront_distribution.this (it starts with the current secret; see terraform/README.md, \"Drift\")."
    }
  }
}

# Access logs through CloudFront's standard logging v2, delivered by CloudWatch Logs to a log
# group: unlike the legacy S3 logging (ACL grants to a bucket), it works from every region, opt-in
# ones included. CloudFront is global and its deliveries are configured in us-east-1, so the log
# group lives there too.
resource "aws_cloudwatch_log_group" "access" {
  #checkov:skip=CKV_AWS_158:Encrypted at rest by CloudWatch Logs with AWS owned keys; access logs hold no secret (the origin header is not a logged field), so a customer managed key would add cost and a key policy without protecting anything.
  #checkov:skip=CKV_AWS_338:Access logs kept for log_retention_days, a variable, rather than a year.
  provider = aws.us_east_1

  # Under /aws/vendedlogs/, CloudWatch Logs grants every delivery one shared resource policy instead
  # of growing a policy per log group (an account has at most 10 per region).
  name              = "/aws/vendedlogs/cloudfront/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_delivery_source" "access" {
  provider = aws.us_east_1

  name         = "${var.name}-cloudfront"
  log_type     = "ACCESS_LOGS"
  resource_arn = aws_cloudfront_distribution.this.arn
}

resource "aws_cloudwatch_log_delivery_destination" "access" {
  provider = aws.us_east_1

  name          = "${var.name}-cloudfront"
  output_format = "json"

  delivery_destination_configuration {
    destination_resource_arn = aws_cloudwatch_log_group.access.arn
  }
}

resource "aws_cloudwatch_log_delivery" "access" {
  provider = aws.us_east_1

  delivery_source_name     = aws_cloudwatch_log_delivery_source.access.name
  delivery_destination_arn = aws_cloudwatch_log_delivery_destination.access.arn
}

check "origin_matches_configuration" {
  assert {
    condition = alltrue([
      for origin in aws_cloudfront_distribution.this.origin : origin.domain_name == var.origin_domain_name && alltrue(concat(
        [for timeout in concat(origin.custom_origin_config[*].origin_read_timeout, origin.vpc_origin_config[*].origin_read_timeout) : timeout == local.origin_read_timeout_seconds],
        [for timeout in concat(origin.custom_origin_config[*].origin_keepalive_timeout, origin.vpc_origin_config[*].origin_keepalive_timeout) : timeout == local.origin_keepalive_timeout_seconds],
      ))
    ])
    error_message = "The CloudFront origin differs from the configuration (e.g. the load balancer was replaced), and Terraform does not update origins (they carry the Lambda-managed secret header). Update the origin in place with the AWS CLI, keeping its custom header, or replace the distribution (new domain name); see terraform/README.md, \"Drift\"."
  }
}
