variable "name" {
  description = "Prefix of the secret's name (Secrets Manager adds a random suffix)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,480}$", var.name))
    error_message = "name must be 1-480 letters, digits or /_+=.@- (a Secrets Manager name prefix)."
  }
}

variable "description" {
  description = "Description of the secret: whose value it is."
  type        = string
}

variable "length" {
  description = "Characters of the random value."
  type        = number
  default     = 64

  validation {
    condition     = var.length >= 16 && var.length <= 128 && floor(var.length) == var.length
    error_message = "length must be a whole number from 16 to 128."
  }
}

variable "lowercase_only" {
  description = "Draw from lowercase letters and digits only (for consumers that compare without case)."
  type        = bool
  default     = false
}
