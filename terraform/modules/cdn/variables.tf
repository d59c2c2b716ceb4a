variable "name" {
  description = "Name of the distribution (its comment) and prefix of its log bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,35}$", var.name))
    error_message = "name must be 1-36 lowercase letters, digits or hyphens (it prefixes an S3 bucket name)."
  }
}

variable "origin_domain_name" {
  description = "DNS name of the load balancer CloudFront forwards to (over HTTP on port 80)."
  type        = string
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
  description = "Days the standard (access) logs stay in the log bucket."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 1 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "log_retention_days must be a whole number of at least 1."
  }
}
