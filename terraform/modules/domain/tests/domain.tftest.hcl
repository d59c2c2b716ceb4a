# The domain's two certificates (CloudFront's in us-east-1, the load balancer's in the stack's
# region), validated by DNS in the zone, and the alias records for viewers and for the origin.
# Mocked providers: no account needed.

mock_provider "aws" {
  mock_resource "aws_acm_certificate" {
    defaults = {
      arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000002"
      domain_validation_options = [{
        domain_name           = "origin.ws.example.com"
        resource_record_name  = "_0123.origin.ws.example.com."
        resource_record_type  = "CNAME"
        resource_record_value = "_4567.acm-validations.aws."
      }]
    }
  }
  mock_resource "aws_acm_certificate_validation" {
    defaults = { certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000002" }
  }
}

mock_provider "aws" {
  alias = "us_east_1"

  mock_resource "aws_acm_certificate" {
    defaults = {
      arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000001"
      domain_validation_options = [{
        domain_name           = "ws.example.com"
        resource_record_name  = "_89ab.ws.example.com."
        resource_record_type  = "CNAME"
        resource_record_value = "_cdef.acm-validations.aws."
      }]
    }
  }
  mock_resource "aws_acm_certificate_validation" {
    defaults = { certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000001" }
  }
}

variables {
  domain_name                 = "ws.example.com"
  hosted_zone_id              = "Z0123456789ABCDEFGHIJ"
  distribution_domain_name    = "d1234abcd.cloudfront.net"
  distribution_hosted_zone_id = "Z2FDTNDATAQYW2"
  load_balancer_dns_name      = "websocket-test-1234567890.eu-west-1.elb.amazonaws.com"
  load_balancer_zone_id       = "Z32O12XQLNTSW2"
}

run "two_certificates_validated_and_the_names_in_the_zone" {
  command = apply

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = aws_acm_certificate.cloudfront.domain_name == "ws.example.com" && startswith(output.cloudfront_certificate_arn, "arn:aws:acm:us-east-1:")
    error_message = "CloudFront's certificate is for the domain, in us-east-1."
  }
  assert {
    condition     = aws_acm_certificate.origin.domain_name == "origin.ws.example.com" && output.origin_domain_name == "origin.ws.example.com" && startswith(output.origin_certificate_arn, "arn:aws:acm:eu-west-1:")
    error_message = "The load balancer's certificate covers the origin name, in the stack's region."
  }
  assert {
    condition     = aws_route53_record.validation["ws.example.com"].name == "_89ab.ws.example.com." && aws_route53_record.validation["origin.ws.example.com"].records == toset(["_4567.acm-validations.aws."]) && alltrue([for record in aws_route53_record.validation : record.zone_id == "Z0123456789ABCDEFGHIJ" && record.type == "CNAME"])
    error_message = "Each certificate's validation record goes in the zone."
  }
  assert {
    condition     = toset(keys(aws_route53_record.viewers)) == toset(["A", "AAAA"]) && alltrue([for record in aws_route53_record.viewers : record.alias[0].name == "d1234abcd.cloudfront.net" && record.alias[0].zone_id == "Z2FDTNDATAQYW2"])
    error_message = "The domain points at the distribution over IPv4 and IPv6."
  }
  assert {
    condition     = aws_route53_record.origin.name == "origin.ws.example.com" && aws_route53_record.origin.alias[0].name == "websocket-test-1234567890.eu-west-1.elb.amazonaws.com"
    error_message = "The origin name points at the load balancer."
  }
}

run "a_domain_that_is_not_a_dns_name_is_refused" {
  command = plan

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  variables {
    domain_name = "https://ws.example.com/"
  }

  expect_failures = [var.domain_name]
}
