variable "name" {
  description = "Name of the Lambda function, its role and its log group, and prefix of its secret's name."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9-_]{1,64}$", var.name))
    error_message = "name must be 1-64 letters, digits, hyphens or underscores (a Lambda function name)."
  }
}

variable "lambda_zip_path" {
  description = "Path of the custom-header-fn deployment package: a zip holding the `bootstrap` executable (`make lambda` builds it)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip") && fileexists(var.lambda_zip_path)
    error_message = "lambda_zip_path must name an existing .zip file; build it with `make lambda`."
  }
}

variable "architecture" {
  description = "Instruction set the package was built for: arm64 (Graviton, the default) or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "distribution_id" {
  description = "ID of the CloudFront distribution whose origin carries the header (the rotation phases update it)."
  type        = string
}

variable "distribution_arn" {
  description = "ARN of that distribution: the function may read and update it and no other."
  type        = string
}

variable "origin_id" {
  description = "ID of the origin, inside the distribution, that gets the header."
  type        = string
}

variable "header_name" {
  description = "Name of the secret header."
  type        = string
  default     = "X-Origin-Verify"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,40}$", var.header_name)) && !startswith(lower(var.header_name), "x-amz-") && !startswith(lower(var.header_name), "x-edge-")
    error_message = "header_name must be 1-40 letters, digits or hyphens and must not start with X-Amz- or X-Edge- (CloudFront reserves them)."
  }
}

variable "log_retention_days" {
  description = "Days the function's CloudWatch logs are kept."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}
