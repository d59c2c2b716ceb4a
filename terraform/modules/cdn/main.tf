locals {
  origin_id = "alb"

  # AWS managed policies, referred to by the IDs AWS documents for them (they are the same in every
  # account). CachingDisabled: every request reaches the origin, as a WebSocket upgrade must.
  # AllViewer: forwards every viewer header (Sec-WebSocket-Key, -Version, -Protocol, -Extensions
  # included), cookies and query strings, the policy CloudFront's WebSocket guide names.
  # SecurityHeadersPolicy: HSTS, X-Content-Type-Options and friends on the HTTP answers.
  caching_disabled_policy_id         = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
  all_viewer_origin_request_policy   = "216adef6-5c7f-47e4-b989-5492eafa07d3"
  security_headers_response_policy   = "67f7725c-6f97-4210-82d7-5512b31e9d03"
  origin_read_timeout_seconds        = 30
  origin_keepalive_timeout_seconds   = 5
  all_methods                        = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
  cloudfront_standard_logging_prefix = "cloudfront/"
}

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This bucket receives access logs; logging its own accesses would need another bucket for no reader.
  #checkov:skip=CKV_AWS_144:Cross-region replication of access logs is not worth a second bucket and its cost here.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256): CloudFront standard logging cannot write to a bucket encrypted with a customer managed KMS key without a key policy for the log delivery account; the logs hold no secrets.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of new log files.
  bucket_prefix = "${var.name}-cf-logs-"
  # Logs are not worth keeping once the distribution is gone; `make destroy` removes them too.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket = aws_s3_bucket.logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# CloudFront standard logging delivers through a bucket ACL grant, so ACLs must stay enabled:
# BucketOwnerPreferred keeps the bucket owner the owner of every delivered object.
resource "aws_s3_bucket_ownership_controls" "logs" {
  #checkov:skip=CKV2_AWS_65:CloudFront standard logging to S3 delivers through an ACL grant and fails on a bucket with ACLs disabled.
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerPreferred"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_68:No WAF WebACL: a cost decision left to the operator; the origin is closed to everything but this distribution.
  #checkov:skip=CKV2_AWS_47:No WAF WebACL, see CKV_AWS_68.
  #checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate always allows TLSv1; a minimum of TLSv1.2 needs a custom domain with an ACM certificate, which this service does not have.
  #checkov:skip=CKV2_AWS_42:No custom domain, hence the default certificate, see CKV_AWS_174.
  #checkov:skip=CKV_AWS_310:A single origin: failover would need a second deployment in another region.
  #checkov:skip=CKV_AWS_305:No default root object: the origin serves WebSocket endpoints and /health, no site.
  #checkov:skip=CKV_AWS_374:No geo restriction: a public broadcast service; restricting countries is a product decision.
  #checkov:skip=CKV2_AWS_46:False positive: the origin is a load balancer, not an S3 bucket, so there is no origin access to set.
  #checkov:skip=CKV2_AWS_32:False positive: the AWS managed SecurityHeadersPolicy is attached by its ID (response_headers_policy_id); the check only recognizes a policy resource.
  enabled         = true
  comment         = var.name
  price_class     = var.price_class
  is_ipv6_enabled = true

  origin {
    origin_id   = local.origin_id
    domain_name = var.origin_domain_name

    custom_origin_config {
      origin_protocol_policy   = "http-only"
      http_port                = 80
      https_port               = 443
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = local.origin_read_timeout_seconds
      origin_keepalive_timeout = local.origin_keepalive_timeout_seconds
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

  logging_config {
    bucket          = aws_s3_bucket.logs.bucket_domain_name
    prefix          = local.cloudfront_standard_logging_prefix
    include_cookies = false
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }

  lifecycle {
    # The secret origin header is written by the custom-header-fn Lambda after the distribution
    # exists (its value cannot be known before), so Terraform must not compare the origin with
    # this configuration or it would plan to remove the header on every run. The cost: changes to
    # the origin block below reach a distribution only when it is created; the check block after
    # this resource says when the deployed origin has fallen behind. See terraform/README.md.
    ignore_changes = [origin]
  }

  depends_on = [
    aws_s3_bucket_ownership_controls.logs,
    aws_s3_bucket_public_access_block.logs,
  ]
}

check "origin_matches_configuration" {
  assert {
    condition = alltrue([
      for origin in aws_cloudfront_distribution.this.origin : origin.domain_name == var.origin_domain_name && alltrue([
        for config in origin.custom_origin_config :
        config.origin_protocol_policy == "http-only" &&
        config.http_port == 80 &&
        config.origin_read_timeout == local.origin_read_timeout_seconds &&
        config.origin_keepalive_timeout == local.origin_keepalive_timeout_seconds
      ])
    ])
    error_message = "The CloudFront origin differs from the configuration (e.g. the load balancer was replaced), and Terraform does not update origins (they carry the Lambda-managed secret header). Update the origin in place with the AWS CLI, keeping its custom header, or replace the distribution (new domain name); see terraform/README.md, \"Drift\"."
  }
}
