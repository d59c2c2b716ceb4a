variable "domain_name" {
  description = "The name viewers connect to (wss://<domain_name>/wss), in the hosted zone; origin.<domain_name> becomes CloudFront's name for the load balancer."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name)) && length(var.domain_name) <= 246
    error_message = "domain_name must be a lowercase DNS name such as ws.example.com, short enough for origin.<domain_name> (253 characters at most)."
  }
}

variable "hosted_zone_id" {
  description = "Route 53 public hosted zone that holds domain_name: the certificates' validation records and the alias records go there."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{1,31}$", var.hosted_zone_id))
    error_message = "hosted_zone_id must be a Route 53 hosted zone ID (Z followed by letters and digits)."
  }
}

variable "distribution_domain_name" {
  description = "The CloudFront distribution's <id>.cloudfront.net name, target of the viewers' alias records."
  type        = string
}

variable "distribution_hosted_zone_id" {
  description = "CloudFront's Route 53 zone for alias records (the distribution's hosted_zone_id)."
  type        = string
}

variable "load_balancer_dns_name" {
  description = "The load balancer's DNS name, target of the origin's alias record."
  type        = string
}

variable "load_balancer_zone_id" {
  description = "The load balancer's Route 53 zone for alias records."
  type        = string
}
