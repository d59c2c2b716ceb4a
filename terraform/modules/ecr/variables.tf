variable "name" {
  description = "Name of the repository."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.name)) && length(var.name) <= 256
    error_message = "name must be a valid ECR repository name: lowercase letters, digits, and . _ - / between them."
  }
}

variable "images_to_keep" {
  description = "How many tagged images the lifecycle policy keeps (the newest by push date); older ones are deleted. Keep enough to roll back to."
  type        = number
  default     = 20

  validation {
    condition     = var.images_to_keep >= 1 && floor(var.images_to_keep) == var.images_to_keep
    error_message = "images_to_keep must be a whole number of at least 1."
  }
}

variable "force_delete" {
  description = "Let `terraform destroy` delete the repository while it still holds images. On by default so that `make destroy` removes everything `make apply` created."
  type        = bool
  default     = true
}
