terraform {
  # 1.11: write-only attributes and ephemeral resources keep secrets out of the plan and state
  # (random-secret); 1.9: variable validations may refer to other variables.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
      # CloudFront reads certificates in us-east-1 only, whatever the stack's region.
      configuration_aliases = [aws.us_east_1]
    }
  }
}
