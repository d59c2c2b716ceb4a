variable "name" {
  description = "Name of the distribution (its comment), of its access log group and of the log delivery source and destination."
  type        = string

  validation {
    # "<name>-cloudfront" names the log delivery source, at most 60 characters.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,47}$", var.name))
    error_message = "name must be 1-48 lowercase letters, digits or hyphens."
  }
}

variable "origin_domain_name" {
  description = "DNS name CloudFront forwards to: the load balancer's, or with origin_https a name its certificate covers."
  type        = string
}

variable "origin_secret_header" {
  description = "The secret header CloudFront adds to every request to the origin, with the value it starts with (the origin-secret module's Lambda rotates it later)."
  type = object({
    name  = string
    value = string
  })
  sensitive = true
}

variable "price_class" {
  description = "Which edge locations serve viewers: PriceClass_100 (North America, Europe), PriceClass_200, or PriceClass_All."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "log_retention_days" {
  description = "Days the access logs stay in their CloudWatch log group."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "origin_https" {
  description = "Reach the origin over HTTPS (https-only, TLS 1.2, port 443): origin_domain_name must then be covered by the load balancer's certificate. False: HTTP on port 80, in clear (over the internet, or inside AWS's network with vpc_origin)."
  type        = bool
  default     = false
}

variable "aliases" {
  description = "Domain names the distribution serves besides <id>.cloudfront.net; they need acm_certificate_arn."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.aliases) == 0 || var.acm_certificate_arn != null
    error_message = "aliases need acm_certificate_arn: CloudFront serves a domain only with a certificate for it."
  }
}

variable "acm_certificate_arn" {
  description = "ACM certificate in us-east-1 covering aliases; null: the default *.cloudfront.net certificate."
  type        = string
  default     = null

  validation {
    condition     = var.acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate in us-east-1 (CloudFront reads certificates there only), or null."
  }
}

variable "vpc_origin" {
  description = "Reach an internal load balancer through a CloudFront VPC origin: its ARN and its VPC (where CloudFront creates the security group its network interfaces use, returned as vpc_origin_security_group_id). Null: reach an internet-facing load balancer over the internet."
  type = object({
    load_balancer_arn = string
    vpc_id            = string
  })
  default = null

  validation {
    condition     = var.vpc_origin == null ? true : can(regex("^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:loadbalancer/app/", var.vpc_origin.load_balancer_arn)) && startswith(var.vpc_origin.vpc_id, "vpc-")
    error_message = "vpc_origin needs an Application Load Balancer ARN (arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/...) and a VPC ID (vpc-...)."
  }
}
