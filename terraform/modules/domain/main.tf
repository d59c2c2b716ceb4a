# The deployment's own domain: CloudFront serves it to viewers, and CloudFront reaches the load
# balancer through a second name under it over HTTPS, so the secret header and every frame are
# encrypted on the way to the origin too. Both certificates come from ACM, validated by DNS records
# in the domain's hosted zone (ACM renews them by itself while the records stay).

locals {
  origin_domain_name = "origin.${var.domain_name}"
}

# CloudFront reads certificates in us-east-1 only.
resource "aws_acm_certificate" "cloudfront" {
  provider = aws.us_east_1

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

# The load balancer's, in the stack's region, for the name CloudFront's origin uses.
resource "aws_acm_certificate" "origin" {
  domain_name       = local.origin_domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # ACM's answer per name to prove: the record that proves it.
  validation_options = {
    for option in concat(tolist(aws_acm_certificate.cloudfront.domain_validation_options), tolist(aws_acm_certificate.origin.domain_validation_options)) :
    option.domain_name => option
  }
}

# Keyed by the names (known when planning), not by ACM's answer (known only once the
# certificates exist).
resource "aws_route53_record" "validation" {
  for_each = toset([var.domain_name, local.origin_domain_name])

  zone_id         = var.hosted_zone_id
  name            = local.validation_options[each.key].resource_record_name
  type            = local.validation_options[each.key].resource_record_type
  records         = [local.validation_options[each.key].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "cloudfront" {
  provider = aws.us_east_1

  certificate_arn         = aws_acm_certificate.cloudfront.arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

resource "aws_acm_certificate_validation" "origin" {
  certificate_arn         = aws_acm_certificate.origin.arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

# Viewers: the domain to the distribution, over IPv4 and IPv6 (the distribution has IPv6 on).
resource "aws_route53_record" "viewers" {
  #checkov:skip=CKV2_AWS_23:False positive: an alias to the distribution, whose name comes in as a variable (distribution_domain_name), so the check cannot follow it to the resource.
  for_each = toset(["A", "AAAA"])

  zone_id = var.hosted_zone_id
  name    = var.domain_name
  type    = each.key

  alias {
    name                   = var.distribution_domain_name
    zone_id                = var.distribution_hosted_zone_id
    evaluate_target_health = false
  }
}

# CloudFront's origin: the name the load balancer's certificate covers, to the load balancer.
resource "aws_route53_record" "origin" {
  #checkov:skip=CKV2_AWS_23:False positive: an alias to the load balancer, whose name comes in as a variable (load_balancer_dns_name), so the check cannot follow it to the resource.
  zone_id = var.hosted_zone_id
  name    = local.origin_domain_name
  type    = "A"

  alias {
    name                   = var.load_balancer_dns_name
    zone_id                = var.load_balancer_zone_id
    evaluate_target_health = false
  }
}
