output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "header_name" {
  description = "Name of the secret header on the origin."
  value       = var.header_name
}

output "header_value" {
  description = "Current value of the secret header, as the function reported it."
  value       = sensitive(local.result.HeaderValue)
  sensitive   = true
}

output "accepted_header_values" {
  description = "Values the origin must accept: the current one, and the previous one while CloudFront is still deploying a rotation."
  value       = sensitive(compact([local.result.HeaderValue, local.rotation_in_progress ? try(local.result.PreviousHeaderValue, null) : null]))
  sensitive   = true
}
